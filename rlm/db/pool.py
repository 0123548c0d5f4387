"""One connection pool per PostgreSQL database per process, shared by every store in it.

The stores of a process (the core's task table, webhook outbox, LM memo, rate journal and
quota ledger) borrow a connection for one statement, one transaction or one pipeline, and give
it back: a process keeps a few warm connections instead of one per store, a connection the
server dropped is replaced instead of failing its store for good, and the schema is checked
once per process, not once per store.

Example:
    >>> with shared_pool(url).connection() as conn:                  # doctest: +SKIP
    ...     conn.execute("SELECT 1").fetchone()
    (1,)
"""

from __future__ import annotations

import atexit
import threading
from typing import TYPE_CHECKING

from psycopg.abc import Buffer
from psycopg.adapt import Loader

from rlm.db.migrations import check_schema
from rlm.db.url import redact, validate_database_url
from rlm.errors import InternalError

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

__all__ = ["MAX_CONNECTIONS", "close_pools", "configure_pools", "pool_size", "shared_pool"]

#: Connections a process opens to one database at most by default (``RLM_DATABASE_POOL_SIZE``
#: sets it). A store holds one only while a statement, transaction or pipeline runs; the
#: core's loop runs one at a time, and the threads it hands blocking work to a few more.
MAX_CONNECTIONS = 8

_size = MAX_CONNECTIONS

#: How long a borrower waits for a connection (all in use, or the server away) before failing.
_WAIT_S = 30.0

_pools: dict[str, ConnectionPool] = {}
_lock = threading.Lock()


def configure_pools(size: int) -> None:
    """Open the pools of this process with at most ``size`` connections each (from the
    ``database_pool_size`` setting); pools already open keep theirs.

    Raises:
        ValueError: ``size`` is below 1.
    """
    global _size
    if size < 1:
        raise ValueError(f"a connection pool needs at least 1 connection, not {size}")
    _size = size


def pool_size() -> int:
    """The most connections each pool of this process opens (see :func:`configure_pools`)."""
    return _size


def shared_pool(url: str) -> ConnectionPool:
    """This process's pool of autocommit connections to ``url``, opened on first use.

    Connections load NUMERIC as ``int`` or ``float`` (as SQLite returns ``SUM`` of integers),
    never :class:`decimal.Decimal`.

    Raises:
        InvalidInput: ``url`` is not a PostgreSQL URL.
        InternalError: The server is unreachable, or its schema is not this code's.
    """
    from psycopg_pool import ConnectionPool, PoolTimeout

    checked = validate_database_url(url)
    with _lock:
        pool = _pools.get(checked)
        if pool is not None and not pool.closed:
            return pool
        pool = ConnectionPool(
            checked,
            min_size=1,
            max_size=_size,
            kwargs={"autocommit": True, "connect_timeout": 10},
            configure=_configure,
            timeout=_WAIT_S,
            name="rlm-state",
            open=False,
        )
        try:
            pool.open(wait=True, timeout=15)
            with pool.connection() as conn:
                check_schema(conn)
        except PoolTimeout:
            pool.close()
            # libpq's message may quote the URL; say which server without its password.
            raise InternalError(
                f"cannot connect to the state database {redact(checked)}",
                {"cause": "PoolTimeout"},
            ) from None
        except BaseException:
            pool.close()
            raise
        _pools[checked] = pool
        return pool


def close_pools() -> None:
    """Close every pool of this process (their connections too)."""
    with _lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.close()


def _configure(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    conn.adapters.register_loader("numeric", _NumericLoader)


def numeric_loader() -> type[Loader]:
    """The NUMERIC loader every pool's connections use (the asynchronous pool's too)."""
    return _NumericLoader


class _NumericLoader(Loader):
    """NUMERIC as ``int`` when whole, else ``float`` (never :class:`decimal.Decimal`)."""

    def load(self, data: Buffer) -> int | float:
        text = bytes(data).decode()
        return int(text) if text.lstrip("-").isdigit() else float(text)


# The pool's worker threads would otherwise outlive the interpreter's shutdown of modules.
atexit.register(close_pools)
