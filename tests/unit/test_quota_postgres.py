"""Several quota services on one PostgreSQL database: one ledger, exact across instances.

Each service here has its own connection and its own in-memory ledger, as two ``rlm serve``
instances on two Ray clusters would; the database's row lock is all that orders them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest

from rlm.db.connect import connect, ensure_schema
from rlm.errors import InternalError, QuotaExceeded
from rlm.models.quotas import QuotaConfig
from rlm.quotas import FrozenClock, QuotaLedgerService
from rlm.quotas.records import Reservation

NOW = datetime(2028, 2, 29, 12, tzinfo=UTC)


@pytest.fixture
def url(postgres_url: str) -> str:
    ensure_schema(postgres_url)
    return postgres_url


@pytest.fixture
def pair(url: str) -> Iterator[tuple[QuotaLedgerService, QuotaLedgerService]]:
    clock = FrozenClock(NOW)
    a = QuotaLedgerService(None, clock=clock, database_url=url)
    b = QuotaLedgerService(None, clock=clock, database_url=url)
    yield a, b
    a.close()
    b.close()


def _config(user_id: str, daily: int) -> QuotaConfig:
    return QuotaConfig(
        user_id=user_id,
        daily_agent_limit=daily,
        weekly_agent_limit=1000,
        monthly_agent_limit=1000,
        daily_compute_hours=100.0,
        max_concurrent_agents=1000,
        max_storage_gb=1.0,
    )


def test_each_instance_sees_the_others_changes(
    pair: tuple[QuotaLedgerService, QuotaLedgerService],
) -> None:
    a, b = pair
    a.set_user_config(_config("ada", daily=5))
    held = a.reserve("ada", 3, tier="user", task_id="t1")
    assert b.user_status("ada").daily.agents_remaining == 5 - 3  # held counts against it
    with pytest.raises(QuotaExceeded):
        b.reserve("ada", 3, tier="user", task_id="t2")  # 3 + 3 > 5, though b never saw t1 made
    # Reconciled on b, once: a's later reconcile of the same hold is the same settlement.
    first = b.reconcile(held.reservation_id, 2, 0.0)
    again = a.reconcile(held.reservation_id, 2, 0.0)
    assert again == first
    assert a.user_status("ada").daily.agents_used == 2
    assert b.snapshot() == a.snapshot()


def test_a_crashed_instances_holds_are_released_by_another(url: str) -> None:
    clock = FrozenClock(NOW)
    dead = QuotaLedgerService(None, clock=clock, database_url=url)
    dead.set_user_config(_config("ada", daily=4))
    held = dead.reserve("ada", 4, tier="user", task_id="orphan")
    dead._store.close()  # the instance is gone without reconciling
    live = QuotaLedgerService(None, clock=clock, database_url=url)
    assert [r.reservation_id for r in live.open_reservations()] == [held.reservation_id]
    live.release(held.reservation_id)  # what the reaper does with a hold no live task owns
    assert live.open_reservations() == []
    assert live.reserve("ada", 4, tier="user", task_id="next").agents == 4
    live.close()


def test_concurrent_admissions_across_instances_admit_exactly_the_limit(url: str) -> None:
    """64 one-agent reservations from 4 instances (16 threads each) against an org with 10
    calls left: exactly 10 are admitted, and the user, team and org rows agree."""
    clock = FrozenClock(NOW)
    setup = QuotaLedgerService(None, clock=clock, database_url=url)
    setup.create_org("acme", "Acme", None, 10, 100.0, 10.0)
    setup.create_team("t", "Team", 1000, 100.0, 10.0, "acme")
    users = [f"u{i}" for i in range(4)]
    for user in users:
        setup.set_user_config(_config(user, daily=1000))
        setup.add_member("t", user, "member")
        setup.set_user_org(user, "acme")
    services = [QuotaLedgerService(None, clock=clock, database_url=url) for _ in range(4)]
    go = threading.Barrier(64)
    admitted: list[Reservation] = []
    refused: list[QuotaExceeded] = []
    failures: list[BaseException] = []
    guard = threading.Lock()

    def admit(i: int) -> None:
        service = services[i % 4]
        go.wait()
        try:
            res = service.reserve(users[i % 4], 1, tier="user", task_id=f"task{i}", team_id="t")
        except QuotaExceeded as err:
            with guard:
                refused.append(err)
        except BaseException as err:  # reported below
            with guard:
                failures.append(err)
        else:
            with guard:
                admitted.append(res)

    threads = [threading.Thread(target=admit, args=(i,)) for i in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures
    assert len(admitted) == 10
    assert len(refused) == 54
    assert all(err.details["resource"] for err in refused)
    for res in admitted:
        services[0].reconcile(res.reservation_id, 1, 0.0)
    fresh = QuotaLedgerService(None, clock=clock, database_url=url)
    assert fresh.organization("acme").agents_used == 10
    assert sum(fresh.user_status(u).daily.agents_used for u in users) == 10
    assert fresh.open_reservations() == []
    for service in (setup, fresh, *services):
        service.close()


def test_a_lost_connection_fails_one_call_and_memory_follows_the_database(url: str) -> None:
    clock = FrozenClock(NOW)
    service = QuotaLedgerService(None, clock=clock, database_url=url)
    service.set_user_config(_config("ada", daily=5))
    before = service.snapshot()
    with connect(url) as admin:  # every connection of the process's pool to the database
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    assert killed is not None and killed[0] >= 1
    with pytest.raises(InternalError):
        service.reserve("ada", 1, tier="user", task_id="lost")
    assert service.snapshot() == before  # the caller saw an error: no hold in memory either
    held = service.reserve("ada", 1, tier="user", task_id="next")  # reconnected
    assert [r.reservation_id for r in service.open_reservations()] == [held.reservation_id]
    service.close()


def test_a_store_refuses_a_database_not_migrated(postgres_url: str) -> None:
    with pytest.raises(InternalError, match="rlm db migrate"):
        QuotaLedgerService(None, database_url=postgres_url)
    with psycopg.connect(postgres_url) as conn:  # and it created nothing
        assert conn.execute("SELECT to_regclass('quota_entities')").fetchone() == (None,)
