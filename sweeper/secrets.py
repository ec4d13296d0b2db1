"""Credentials in storage URLs: kept out of everything the sweeper shows or stores.

A storage URL in space.yaml names its password as `${ENV_VAR}` (or leaves it to libpq's
PGPASSWORD / ~/.pgpass, or MLflow's MLFLOW_TRACKING_PASSWORD). The spec, its stored copy and
every message keep that placeholder; `expand` puts the secret in only where a connection is
made. A password written out in the URL is refused, since the stored copy would then hold it.
`mask` hides credentials in any text shown (an error from a database driver, say).
"""

from __future__ import annotations

import os
import re
import urllib.parse

from sweeper.errors import UserError

# scheme://user:password@host — the password is what gets hidden, up to the last @ before the
# host (a password may hold an @: masked up to the first, its end was shown). A user name may
# hold an @ too (Azure's `me@server`, which SQLAlchemy reads as the user name).
CREDENTIALS = re.compile(
    r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^:/\s]*):(?P<password>\S+)@(?=[^@\s]*(?:\s|$))"
)
# …?password=… (libpq, SQLAlchemy and MySQL drivers read one there too)
QUERY_SECRET = re.compile(
    r"(?P<head>[?&](?:password|passwd|pwd|secret|token|access_token)=)(?P<password>[^&#\s]+)",
    re.IGNORECASE,
)
PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def mask(text: str) -> str:
    """`text` with the password of every URL in it replaced by ***."""
    return QUERY_SECRET.sub(r"\g<head>***", CREDENTIALS.sub(r"\g<head>:***@", text))


def placeholders(url: str | None) -> list[str]:
    """The environment variables a URL names as `${NAME}`."""
    return PLACEHOLDER.findall(url or "")


def url_problem(url: str | None) -> str | None:
    """Why a storage URL as written in space.yaml cannot be used, or None."""
    if url is None:
        return None
    found = [m["password"] for m in (*CREDENTIALS.finditer(url), *QUERY_SECRET.finditer(url))]
    if any(not PLACEHOLDER.fullmatch(password) for password in found):
        return (
            f"{mask(url)} holds a password: write it as ${{ENV_VAR}} and set that variable "
            "(or use PGPASSWORD / ~/.pgpass, MLFLOW_TRACKING_PASSWORD), so that no stored "
            "file or message contains it"
        )
    missing = [name for name in placeholders(url) if name not in os.environ]
    if missing:
        return f"environment variable {', '.join(missing)} is not set (named in {url})"
    return None


def expand(url: str) -> str:
    """The URL with each `${NAME}` replaced by its environment variable, for connecting only.
    A password is percent-encoded: one holding @, /, # or ? was read as part of the host or
    path, and the driver's error then showed what followed the @."""
    secret = [m.span("password") for m in (*CREDENTIALS.finditer(url), *QUERY_SECRET.finditer(url))]

    def value(match: re.Match) -> str:
        try:
            found = os.environ[match[1]]
        except KeyError:
            raise UserError(
                f"environment variable {match[1]} is not set (named in {url})"
            ) from None
        inside = any(start <= match.start() and match.end() <= end for start, end in secret)
        return urllib.parse.quote(found, safe="") if inside else found

    return PLACEHOLDER.sub(value, url)


# what the database and tracking clients read themselves, besides a URL's `${NAME}`s
CLIENT_CREDENTIALS = (
    "PGPASSWORD",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
)


def environment(*urls: str | None) -> dict[str, str]:
    """The variables these URLs name, and the clients' own credential variables, with their
    values: what a process that connects needs (the StudyServer on a cluster node has not the
    driver's environment: given PGPASSWORD, it died with "no password supplied")."""
    named = [name for url in urls for name in placeholders(url)]
    return {name: os.environ[name] for name in (*named, *CLIENT_CREDENTIALS) if name in os.environ}
