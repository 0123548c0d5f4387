"""Asynchronous connections to PostgreSQL for the engine core's hot path.

The core is one asyncio actor that every replica asks everything (status, cancel, execute).
A synchronous round trip on its loop stops the loop until the server answers; a round trip
on an :class:`psycopg_pool.AsyncConnectionPool` lets the loop serve other callers meanwhile.
The task records an execute writes (pending at its start, final at its end) go this way (see
:meth:`rlm.tasks.store.TaskStore.start_async`); the rest of the stores keep the synchronous
pool of :mod:`rlm.db.pool`, whose round trips are off the execute path or rare.

One pool per database and per event loop (a pool's connections belong to the loop that
opened them), at most :func:`rlm.db.pool.pool_size` connections each.

Example:
    >>> pool = await async_pool(url)                                    # doctest: +SKIP
    >>> async with transaction(pool, [b"BEGIN"], conn.plan_statement) as tx:  # doctest: +SKIP
    ...     await tx.execute("UPDATE tasks SET status = ?", ["failed"])
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rlm.db.compat import bind, pg_errors
from rlm.db.pool import numeric_loader, pool_size
from rlm.db.url import redact, validate_database_url
from rlm.errors import InternalError

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import AsyncConnectionPool

__all__ = ["AsyncTransaction", "Plan", "async_pool", "close_async_pools", "transaction"]

#: How long a borrower waits for a connection (all in use, or the server away) before failing.
_WAIT_S = 30.0

_Params = Sequence[Any] | Mapping[str, Any]

#: A store's SQL as PostgreSQL's: the statement and its ``LIMIT`` parameters' positions.
Plan = Callable[[str], tuple[bytes, list[int]]]

# By loop (weakly: a closed loop's pools go with it; an id could be reused by a new loop).
_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, AsyncConnectionPool]] = (
    weakref.WeakKeyDictionary()
)
_opening: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[str, asyncio.Future[AsyncConnectionPool]]
] = weakref.WeakKeyDictionary()


async def async_pool(url: str) -> AsyncConnectionPool:
    """This loop's pool of autocommit connections to ``url``, opened on first use.

    The schema is not checked here: the process's synchronous pool checked it when the first
    store opened (a store has opened before any of its asynchronous writes).

    Raises:
        InvalidInput: ``url`` is not a PostgreSQL URL.
        InternalError: The server is unreachable.
    """
    checked = validate_database_url(url)
    loop = asyncio.get_running_loop()
    pools = _pools.setdefault(loop, {})
    pool = pools.get(checked)
    if pool is not None and not pool.closed:
        return pool
    # Callers arriving while it opens wait for the same pool instead of opening another.
    opening = _opening.setdefault(loop, {})
    pending = opening.get(checked)
    if pending is not None:
        return await asyncio.shield(pending)
    future: asyncio.Future[AsyncConnectionPool] = loop.create_future()
    opening[checked] = future
    try:
        pool = await _open(checked)
    except BaseException as err:
        future.set_exception(err)
        future.exception()  # retrieved: no "never retrieved" warning without other waiters
        raise
    finally:
        opening.pop(checked, None)
    pools[checked] = pool
    future.set_result(pool)
    return pool


async def _open(url: str) -> AsyncConnectionPool:
    from psycopg_pool import AsyncConnectionPool, PoolTimeout

    async def configure(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
        conn.adapters.register_loader("numeric", numeric_loader())

    pool: AsyncConnectionPool = AsyncConnectionPool(
        url,
        min_size=1,
        max_size=pool_size(),
        kwargs={"autocommit": True, "connect_timeout": 10},
        configure=configure,
        timeout=_WAIT_S,
        name="rlm-state-async",
        open=False,
    )
    try:
        await pool.open(wait=True, timeout=15)
    except PoolTimeout:
        await pool.close()
        # libpq's message may quote the URL; say which server without its password.
        raise InternalError(
            f"cannot connect to the state database {redact(url)}", {"cause": "PoolTimeout"}
        ) from None
    return pool


async def close_async_pools() -> None:
    """Close this loop's pools (their connections too)."""
    pools = _pools.pop(asyncio.get_running_loop(), {})
    for pool in pools.values():
        await pool.close()


class AsyncTransaction:
    """The statements of one transaction, queued in a pipeline on an asynchronous
    connection: they travel together, up to the first result read and with the ``COMMIT``.

    Statements are the stores' SQLite-shaped SQL, translated by ``plan`` (the store's
    :meth:`rlm.db.compat.PgCompatConnection.plan_statement`), so a store and its hook write
    the same SQL on both paths.
    """

    def __init__(
        self,
        conn: psycopg.AsyncConnection[tuple[object, ...]],
        pipeline: psycopg.AsyncPipeline,
        plan: Plan,
    ) -> None:
        self._conn = conn
        self._pipeline = pipeline
        self._plan = plan

    async def execute(self, sql: str, params: _Params = ()) -> None:
        """Queue one statement (its result is not read)."""
        text, limits = self._plan(sql)
        await self._conn.execute(text, bind(params, limits))

    async def executemany(self, sql: str, rows: Sequence[_Params]) -> None:
        """Queue one statement per parameter row."""
        text, limits = self._plan(sql)
        await self._conn.cursor().executemany(text, [bind(r, limits) for r in rows])

    async def fetchall(self, sql: str, params: _Params = ()) -> list[tuple[Any, ...]]:
        """Queue one statement, send what is queued, and read its rows."""
        text, limits = self._plan(sql)
        cursor = await self._conn.execute(text, bind(params, limits))
        await self._pipeline.sync()
        return [tuple(row) for row in await cursor.fetchall()]

    async def rowcount(self, sql: str, params: _Params = ()) -> int:
        """Queue one statement, send what is queued, and read how many rows it changed."""
        text, limits = self._plan(sql)
        cursor = await self._conn.execute(text, bind(params, limits))
        await self._pipeline.sync()
        return int(cursor.rowcount)


@contextlib.asynccontextmanager
async def transaction(
    pool: AsyncConnectionPool, begin: Sequence[bytes], plan: Plan
) -> AsyncIterator[AsyncTransaction]:
    """A write transaction on a connection of ``pool``: ``begin`` (``BEGIN`` and its advisory
    locks), the body's statements and the ``COMMIT``, in one pipeline.

    Errors are raised as :mod:`sqlite3`'s (see :func:`rlm.db.compat.pg_errors`), so callers
    handle them as the synchronous store's. On an error the transaction is rolled back.
    """
    from psycopg.pq import TransactionStatus

    with pg_errors():
        async with pool.connection() as conn:
            try:
                async with conn.pipeline() as pipeline:
                    for statement in begin:
                        await conn.execute(statement)
                    yield AsyncTransaction(conn, pipeline, plan)
                    await conn.execute(b"COMMIT")
            except BaseException:
                if not conn.broken and conn.info.transaction_status != TransactionStatus.IDLE:
                    with contextlib.suppress(Exception):
                        await conn.execute(b"ROLLBACK")
                raise
