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

from sweeper.errors import UserError

# scheme://user:password@ — the password is what gets hidden
CREDENTIALS = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*):(?P<password>[^@\s]+)@")
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
    """The URL with each `${NAME}` replaced by its environment variable, for connecting only."""

    def value(match: re.Match) -> str:
        try:
            return os.environ[match[1]]
        except KeyError:
            raise UserError(
                f"environment variable {match[1]} is not set (named in {url})"
            ) from None

    return PLACEHOLDER.sub(value, url)


def environment(*urls: str | None) -> dict[str, str]:
    """The variables these URLs name, with their values: what a process that connects needs."""
    return {
        name: os.environ[name] for url in urls for name in placeholders(url) if name in os.environ
    }
