"""``RLM_DATABASE_POOL_SIZE``: each pool of a process opens at most that many connections.

Counted on the server (``pg_stat_activity``), with more borrowers than the pool may open, on
the stores' synchronous pool and on the core's asynchronous one.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest
from pydantic import ValidationError

from rlm.config import Settings
from rlm.db.async_pool import async_pool, close_async_pools
from rlm.db.connect import ensure_schema
from rlm.db.pool import MAX_CONNECTIONS, close_pools, configure_pools, pool_size, shared_pool
from rlm.testing.postgres import ThrowawayPostgres

BORROWERS = 6
SIZE = 2


@pytest.fixture
def sized(postgres_server: ThrowawayPostgres, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh migrated database, and pools opened with at most ``SIZE`` connections."""
    url = postgres_server.database_url("pool_" + request.node.name[-20:].lower())
    ensure_schema(url)
    configure_pools(SIZE)
    try:
        yield url
    finally:
        close_pools()
        configure_pools(MAX_CONNECTIONS)


def _peak(url: str, load: Callable[[], None]) -> int:
    """The most connections to ``url``'s database seen on the server while ``load`` runs."""
    database = url.rsplit("/", 1)[1]
    seen: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
            while not stop.is_set():
                row = admin.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (database,)
                ).fetchone()
                assert row is not None
                seen.append(int(str(row[0])))
                time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        load()
    finally:
        stop.set()
        watcher.join()
    return max(seen)


def test_the_setting_is_read_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLM_DATABASE_POOL_SIZE", "3")
    assert Settings().database_pool_size == 3
    assert Settings.model_fields["database_pool_size"].description
    for bad in ("0", "-1", "many"):
        monkeypatch.setenv("RLM_DATABASE_POOL_SIZE", bad)
        with pytest.raises(ValidationError, match="database_pool_size"):
            Settings()
    with pytest.raises(ValueError, match="at least 1"):
        configure_pools(0)
    assert pool_size() == MAX_CONNECTIONS


def test_the_shared_pool_opens_at_most_the_setting(sized: str) -> None:
    pool = shared_pool(sized)

    def borrow() -> None:
        with pool.connection() as conn:
            conn.execute("SELECT pg_sleep(0.3)")

    def load() -> None:
        threads = [threading.Thread(target=borrow) for _ in range(BORROWERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    # Six borrowers of 0.3 s each wait their turn on two connections: all served, none more.
    t0 = time.monotonic()
    assert _peak(sized, load) == SIZE
    assert time.monotonic() - t0 >= BORROWERS / SIZE * 0.3


def test_the_async_pool_opens_at_most_the_setting(sized: str) -> None:
    async def borrow() -> None:
        pool = await async_pool(sized)
        async with pool.connection() as conn:
            await conn.execute("SELECT pg_sleep(0.3)")

    async def all_of_them() -> None:
        try:
            await asyncio.gather(*(borrow() for _ in range(BORROWERS)))
        finally:
            await close_async_pools()

    assert _peak(sized, lambda: asyncio.run(all_of_them())) == SIZE
