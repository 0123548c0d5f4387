"""Connections to the PostgreSQL state database, checked against the code's schema.

Example:
    >>> conn = open_checked(url)                                          # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rlm.db.migrations import check_schema, migrate
from rlm.db.url import redact, validate_database_url
from rlm.errors import InternalError

if TYPE_CHECKING:
    import psycopg

__all__ = ["connect", "ensure_schema", "open_checked"]


def connect(url: str, *, autocommit: bool = True) -> psycopg.Connection[tuple[object, ...]]:
    """A new connection to ``url`` (validated; the password never appears in errors).

    Raises:
        InvalidInput: ``url`` is not a PostgreSQL URL.
        InternalError: The server cannot be reached or refuses the login.
    """
    import psycopg

    checked = validate_database_url(url)
    try:
        return psycopg.connect(checked, autocommit=autocommit, connect_timeout=10)
    except psycopg.Error as err:
        # libpq's message may quote the URL; say which server without its password.
        raise InternalError(
            f"cannot connect to the state database {redact(checked)}",
            {"cause": type(err).__name__},
        ) from None


def ensure_schema(url: str) -> int:
    """Apply pending migrations (under the advisory lock); the schema version after.

    Raises:
        InternalError: The schema is newer than this code knows, or the server is unreachable.
    """
    with connect(url) as conn:
        migrate(conn)
        return check_schema(conn).current


def open_checked(url: str) -> psycopg.Connection[tuple[object, ...]]:
    """A connection to a database whose schema is exactly the code's (autocommit off).

    Raises:
        InternalError: The schema is newer or older than this code, or the server is
            unreachable.
    """
    conn = connect(url, autocommit=True)
    try:
        check_schema(conn)
        conn.autocommit = False
    except BaseException:
        conn.close()
        raise
    return conn
