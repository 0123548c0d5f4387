"""The ``RLM_DATABASE_URL`` setting: which PostgreSQL holds the state, and how to show it.

Example:
    >>> redact("postgresql://rlm:s3cret@db.internal:5432/rlm")
    'postgresql://rlm:***@db.internal:5432/rlm'
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from rlm.errors import InvalidInput

__all__ = ["SCHEMES", "redact", "validate_database_url"]

#: The URL schemes libpq (and so psycopg) accepts for a server.
SCHEMES = ("postgresql", "postgres")


def validate_database_url(url: str) -> str:
    """``url`` if it names a PostgreSQL server, stripped of surrounding blanks.

    Raises:
        InvalidInput: Another scheme (``sqlite://``, ``mysql://``...) or no host/database.
    """
    text = url.strip()
    parts = urlsplit(text)
    if parts.scheme not in SCHEMES:
        raise InvalidInput(
            f"RLM_DATABASE_URL must be a postgresql:// URL, not {parts.scheme or 'no'} scheme "
            "(leave it unset for the embedded SQLite state under RLM_STATE_DIR)",
            field="database_url",
        )
    if not parts.path.strip("/") and "dbname=" not in parts.query:
        raise InvalidInput(
            "RLM_DATABASE_URL names no database (postgresql://user@host:5432/DBNAME)",
            field="database_url",
        )
    return text


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for logs and error messages)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
