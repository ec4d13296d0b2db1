"""Credentials in storage URLs (sweeper.secrets): masked in what is shown, refused when written
out, put in (percent-encoded) only where a connection is made."""

from __future__ import annotations

import sqlalchemy

from sweeper import secrets


def test_a_password_is_masked_up_to_the_hosts_at_sign():
    """An @ inside the password used to end the mask there and show the rest."""
    assert secrets.mask("postgresql://me:s3cre@tPW@db:5432/optuna x") == (
        "postgresql://me:***@db:5432/optuna x"
    )
    assert secrets.mask("see http://admin:pw@127.0.0.1:5512/#/runs and sqlite:///a.db") == (
        "see http://admin:***@127.0.0.1:5512/#/runs and sqlite:///a.db"
    )
    assert secrets.mask("postgresql://me@db/optuna?password=hunter2&x=1") == (
        "postgresql://me@db/optuna?password=***&x=1"
    )
    assert "s3cre" not in secrets.url_problem("postgresql://me:s3cre@tPW@db/optuna")


def test_an_expanded_password_is_percent_encoded_and_reads_back_whole(monkeypatch):
    """`Xy@Zq/9:k#1` put in as it is made the driver look for host 'Zq'."""
    monkeypatch.setenv("PGPASS_T", "Xy@Zq/9:k#1")
    monkeypatch.setenv("PGHOST_T", "db.example")
    url = secrets.expand("postgresql://me:${PGPASS_T}@${PGHOST_T}:5432/optuna")
    parsed = sqlalchemy.engine.make_url(url)
    assert (parsed.password, parsed.host) == ("Xy@Zq/9:k#1", "db.example")
    query = secrets.expand("postgresql://me@db/optuna?password=${PGPASS_T}")
    assert sqlalchemy.engine.make_url(query).query["password"] == "Xy@Zq/9:k#1"


def test_the_clients_own_credential_variables_go_to_the_process_that_connects(monkeypatch):
    """PGPASSWORD and MLFLOW_TRACKING_PASSWORD, which the docs offer, never reached the
    StudyServer on a cluster node."""
    for name in secrets.CLIENT_CREDENTIALS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PGPASS_T", "a")
    monkeypatch.setenv("PGPASSWORD", "b")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "c")
    monkeypatch.setenv("UNRELATED_T", "d")
    given = secrets.environment("postgresql://me:${PGPASS_T}@db/optuna", None)
    assert given == {"PGPASS_T": "a", "PGPASSWORD": "b", "MLFLOW_TRACKING_PASSWORD": "c"}


def test_a_password_after_a_user_name_holding_an_at_sign_is_refused_and_masked(monkeypatch):
    """Azure's `me@server` user name: SQLAlchemy reads `me@server:hunter2@db` as that user with
    password hunter2, which launch neither refused (the spec copy would keep it) nor masked (its
    storage error printed it)."""
    url = "postgresql://me@server:hunter2@db.example:5432/optuna"
    assert sqlalchemy.engine.make_url(url).password == "hunter2"
    problem = secrets.url_problem(url)
    assert problem is not None and "hunter2" not in problem
    assert secrets.mask(f"{url}: connection refused") == (
        "postgresql://me@server:***@db.example:5432/optuna: connection refused"
    )
    monkeypatch.setenv("PGPASS_T", "x@y")
    placeholder = "postgresql://me@server:${PGPASS_T}@db/optuna"
    assert secrets.url_problem(placeholder) is None
    assert sqlalchemy.engine.make_url(secrets.expand(placeholder)).password == "x@y"
    assert secrets.mask("http://me@host:5000/api and sqlite:///a.db") == (
        "http://me@host:5000/api and sqlite:///a.db"
    )
