"""Durability: a ledger rebuilt from its store is the ledger that wrote it.

The tests that hold for any store run on both (``store`` is ``sqlite`` or ``postgres``: a file
under ``tmp_path`` or a fresh database of the session's throwaway PostgreSQL); the ones about
the SQLite file's journal, WAL and lock are SQLite's alone.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rlm.db import migrate
from rlm.db.connect import connect
from rlm.errors import InternalError, InvalidInput, QuotaExceeded
from rlm.models.quotas import QuotaConfig
from rlm.quotas import FrozenClock, QuotaLedger, QuotaLedgerService, QuotaStore
from rlm.quotas import journal as journal_module
from rlm.quotas.pg_store import PostgresQuotaStore

NOW = datetime(2028, 2, 29, 22, tzinfo=UTC)


class Opener:
    """Opens services (and bare stores) on one state: a SQLite file or a PostgreSQL database."""

    def __init__(self, kind: str, path: Path, url: str | None) -> None:
        self.kind = kind
        self.path = path
        self.url = url

    def service(self, clock: FrozenClock, **kwargs: object) -> QuotaLedgerService:
        return QuotaLedgerService(self.path, clock=clock, database_url=self.url, **kwargs)  # type: ignore[arg-type]

    def store(self) -> QuotaStore | PostgresQuotaStore:
        return PostgresQuotaStore(self.url) if self.url else QuotaStore(self.path)

    def writes(self, service: QuotaLedgerService) -> int:
        """A counter every stored write moves: journal records, or the ledger revision."""
        store = service._store
        if isinstance(store, PostgresQuotaStore):
            return store.revision
        return store.journal_length()

    def crash(self, service: QuotaLedgerService) -> None:
        """Drop the service as a crash would: no compaction, no clean close."""
        store = service._store
        if isinstance(store, QuotaStore):
            store._journal.close()
            store._conn.close()
        else:
            store.close()  # a connection closed mid-life: nothing uncommitted exists


@pytest.fixture(params=["sqlite", "postgres"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    if request.param == "sqlite":
        return Opener("sqlite", tmp_path / "state" / "quotas.db", None)
    url = request.getfixturevalue("postgres_url")
    with connect(url) as conn:
        migrate(conn)
    return Opener("postgres", tmp_path / "unused.db", url)


def _config(user_id: str, daily: int = 10, concurrent: int = 4) -> QuotaConfig:
    return QuotaConfig(
        user_id=user_id,
        daily_agent_limit=daily,
        weekly_agent_limit=100,
        monthly_agent_limit=500,
        daily_compute_hours=5.0,
        max_concurrent_agents=concurrent,
        max_storage_gb=2.0,
    )


def _build(service: QuotaLedgerService, clock: FrozenClock) -> dict[str, str]:
    """Every kind of state: configs, orgs, teams, members, projects, open and settled
    reservations, transfer receipts, emitted-threshold marks and pending events."""
    service.create_org("acme", "Acme", None, 1000, 100.0, 50.0)
    service.create_org("eng", "Eng", "acme", 500, 50.0, 20.0)
    service.create_team("t", "Team", 200, 20.0, 5.0, "eng")
    for user in ("ada", "bob"):
        service.set_user_config(_config(user))
        service.add_member("t", user, "lead" if user == "ada" else "member")
        service.set_member_allocation("t", user, 60, 6.0)
    service.set_project_allocation("t", "p", 50, 5.0, name="Project")
    service.set_user_org("ada", "eng")
    first = service.reserve("ada", 8, tier="power_user", task_id="t1", team_id="t")
    service.reconcile(first.reservation_id, 8, 0.5)  # 80 % of ada's day: one alert
    service.transfer("t", "ada", "bob", 5, 1.0, idempotency_key="xfer-1")
    service.transfer("t", "bob", "ada", 1, 0.0)
    clock.advance(timedelta(minutes=5))
    open_res = service.reserve("ada", 1, tier="power_user", task_id="t2", team_id="t")
    released = service.reserve("bob", 3, tier="user", task_id="t3", concurrent_agents=2)
    service.release(released.reservation_id)
    return {"open": open_res.reservation_id, "settled": first.reservation_id}


def test_round_trip_restores_everything(opener: Opener) -> None:
    clock = FrozenClock(NOW)
    service = opener.service(clock)
    ids = _build(service, clock)
    snapshot = service.snapshot()
    assert len(service.pending_events()) == 1
    service.close()

    again = opener.service(clock)
    assert again.snapshot() == snapshot
    assert again.user_status("ada") == QuotaLedger.restore(snapshot, clock).user_status("ada")
    assert [r.reservation_id for r in again.open_reservations()] == [ids["open"]]
    assert again.team_status("t").projects[0].name == "Project"
    assert again.hierarchy("eng").ancestors[0].org_id == "acme"
    # Used idempotency keys and settled reservations are remembered.
    receipt = again.transfer("t", "ada", "bob", 5, 1.0, idempotency_key="xfer-1")
    assert receipt.transferred_at == NOW
    with pytest.raises(InvalidInput):
        again.transfer("t", "ada", "bob", 6, 1.0, idempotency_key="xfer-1")
    assert again.reconcile(ids["settled"], 1).agent_calls == 8
    # The 80 % mark is remembered: reaching 90 % today fires nothing new.
    res = again.reserve("ada", 1, tier="power_user", task_id="t4")
    again.reconcile(res.reservation_id, 1)
    events = again.drain_events()
    assert [(e["data"]["period"], e["data"]["threshold"]) for e in events] == [("daily", 80)]
    # The open reservation still holds its lease and can be settled.
    assert again.user_status("ada").current_concurrent_agents == 1
    again.reconcile(ids["open"], 0)
    assert again.user_status("ada").current_concurrent_agents == 0
    assert again.user_status("ada").daily.agents_used == 9
    after = again.snapshot()
    again.close()

    third = opener.service(clock)
    assert third.snapshot() == after
    assert third.pending_events() == []  # drained events stay drained
    third.close()


def test_a_crash_loses_no_committed_call(opener: Opener) -> None:
    path = opener.path
    script = textwrap.dedent(
        f"""
        import os
        from datetime import datetime, UTC
        from rlm.quotas import FrozenClock, QuotaLedgerService
        clock = FrozenClock(datetime(2028, 2, 29, 22, tzinfo=UTC))
        svc = QuotaLedgerService({str(path)!r}, clock=clock, database_url={opener.url!r})
        svc.create_org("acme", "Acme", None, 100, 10.0, 1.0)
        kept = svc.reserve("ada", 5, tier="user", task_id="kept", org_id="acme")
        done = svc.reserve("ada", 3, tier="user", task_id="done")
        svc.reconcile(done.reservation_id, 2, 0.25)
        print(kept.reservation_id, flush=True)
        os._exit(0)  # no close, no compaction: only the journal holds the calls
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True
    ).stdout
    clock = FrozenClock(NOW)
    service = opener.service(clock)
    assert [r.reservation_id for r in service.open_reservations()] == [out.strip()]
    status = service.user_status("ada")
    assert status.daily.agents_used == 5 + 2
    assert status.daily.compute_hours_used == 0.25
    # The first reservation recorded acme as ada's org, so the second charged it too.
    assert service.organization("acme").agents_used == 5 + 2
    service.close()


def test_compaction_keeps_the_state(tmp_path: Path) -> None:
    clock = FrozenClock(NOW)
    path = tmp_path / "quotas.db"
    store = QuotaStore(path, compact_every=3)
    ledger = QuotaLedger(clock)
    ledger.set_user_config(_config("ada", daily=100, concurrent=100))
    for i in range(20):
        res = ledger.reserve("ada", 1 + i % 4, tier="user", task_id=f"t{i}")
        store.apply(ledger.pop_changes())
        assert store.journal_length() < 3
        if i % 3:
            ledger.reconcile(res.reservation_id, 1)
            store.apply(ledger.pop_changes())
    assert store.load() == ledger.snapshot()
    store.compact()
    assert store.journal_length() == 0
    assert store.load() == ledger.snapshot()
    store.close()
    with QuotaStore(path) as reopened:
        assert reopened.load() == ledger.snapshot()
        assert reopened.journal_mode() == "wal"
        rows = reopened.load()["reservation"]
        # One row per reservation: open ones, and settled ones kept for idempotent repeats.
        assert len(rows) == 20
        assert sum("settled" not in r for r in rows.values()) == len(ledger.open_reservations())


def test_refused_calls_write_nothing(opener: Opener) -> None:
    clock = FrozenClock(NOW)
    service = opener.service(clock)
    service.set_user_config(_config("ada", daily=1))
    before = opener.writes(service)
    with pytest.raises(QuotaExceeded):
        service.reserve("ada", 2, tier="user", task_id="t")
    with pytest.raises(InvalidInput):
        service.create_org("x", "X", "missing", 1, 1.0, 1.0)
    assert service.check("ada", 2, tier="user").allowed is False
    assert opener.writes(service) == before
    service.close()


def test_a_failed_write_rolls_memory_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FrozenClock(NOW)
    service = QuotaLedgerService(tmp_path / "q.db", clock=clock)
    service.set_user_config(_config("ada"))
    before = service.snapshot()
    real_write = os.write

    def half_then_full_disk(fd: int, data: bytes) -> int:
        real_write(fd, data[: len(data) // 2])  # a torn frame reaches the file...
        raise OSError(errno.ENOSPC, "No space left on device")  # ...then the disk is full

    monkeypatch.setattr(journal_module.os, "write", half_then_full_disk)
    with pytest.raises(InternalError):
        service.reserve("ada", 1, tier="user", task_id="t")
    monkeypatch.undo()
    # The caller saw an error, so the reservation must not exist in memory either.
    assert service.snapshot() == before
    assert service.open_reservations() == []
    service.reserve("ada", 1, tier="user", task_id="t")
    after = service.snapshot()
    service._store._journal.close()  # a crash: no compaction
    service._store._conn.close()
    reopened = QuotaLedgerService(tmp_path / "q.db", clock=clock)
    assert reopened.snapshot() == after  # the torn frame was cut, the next record kept
    reopened.close()


def test_a_torn_journal_tail_is_cut(tmp_path: Path) -> None:
    clock = FrozenClock(NOW)
    path = tmp_path / "q.db"
    store = QuotaStore(path)
    ledger = QuotaLedger(clock)
    ledger.set_user_config(_config("ada"))
    store.apply(ledger.pop_changes())
    kept = ledger.snapshot()
    ledger.reserve("ada", 1, tier="user", task_id="t")
    store.apply(ledger.pop_changes())
    journal = path.with_name(path.name + ".journal")
    store._journal.close()  # a crash: no compaction
    store._conn.close()
    data = journal.read_bytes()
    journal.write_bytes(data[:-3])  # the last record loses its last bytes
    with QuotaStore(path) as reopened:
        assert reopened.journal_length() == 1
        assert reopened.load() == kept
    assert journal.stat().st_size == 0  # compacted on close


def test_replace_overwrites_the_state(opener: Opener) -> None:
    clock = FrozenClock(NOW)
    ledger = QuotaLedger(clock)
    ledger.create_org("acme", "Acme", None, 10, 1.0, 1.0)
    old = QuotaLedger(clock)
    old.create_org("gone", "Gone", None, 1, 1.0, 1.0)
    with opener.store() as store:
        store.apply(old.pop_changes())
        store.replace(ledger.snapshot())
        assert store.load() == ledger.snapshot()
        assert store.load_ledger(clock).organization("acme").agents == 10
    with opener.store() as reopened:  # "gone" is gone for a fresh reader too
        assert reopened.load() == ledger.snapshot()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version=99")
    conn.close()
    with pytest.raises(InternalError):
        QuotaStore(path)


def test_an_unknown_snapshot_version_is_refused() -> None:
    with pytest.raises(InvalidInput):
        QuotaLedger.restore({"meta": {"ledger": {"version": 99}}}, FrozenClock(NOW))


def test_a_store_in_use_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    with QuotaStore(path), pytest.raises(InternalError, match="another process"):
        QuotaStore(path, busy_timeout_ms=50)
    with QuotaStore(path, busy_timeout_ms=50) as again:
        assert again.journal_mode() == "wal"


def test_a_failed_compaction_does_not_fail_the_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FrozenClock(NOW)
    service = QuotaLedgerService(tmp_path / "q.db", clock=clock, compact_every=1)
    store = service._store
    real = store._compact

    def broken() -> None:
        raise sqlite3.OperationalError("disk full")

    monkeypatch.setattr(store, "_compact", broken)
    res = service.reserve("ada", 1, tier="user", task_id="t")  # journalled, so it stands
    assert store.journal_length() == 1
    monkeypatch.setattr(store, "_compact", real)
    service.reconcile(res.reservation_id, 1)
    assert store.journal_length() == 0
    snapshot = service.snapshot()
    service.close()
    with QuotaStore(tmp_path / "q.db") as reopened:
        assert reopened.load() == snapshot


def test_a_batch_answers_each_call_and_commits_once(opener: Opener) -> None:
    clock = FrozenClock(NOW)
    service = opener.service(clock)
    service.set_user_config(_config("ada", daily=10))
    before = opener.writes(service)
    outcomes = service.batch(
        [
            ("reserve", ("ada", 6), {"tier": "user", "task_id": "a"}),
            ("reserve", ("ada", 6), {"tier": "user", "task_id": "b"}),  # 12 > 10: refused
            ("reserve", ("ada", 4), {"tier": "user", "task_id": "c"}),
            ("check", ("ada", 1), {"tier": "user"}),
            ("reserve", ("ada",), {"tier": "user", "task_id": "d"}),  # missing argument
        ]
    )
    assert [type(o).__name__ for o in outcomes] == [
        "Reservation",
        "QuotaExceeded",
        "Reservation",
        "AllocationDecision",
        "InvalidInput",
    ]
    assert outcomes[3].allowed is False  # the first and third calls hold all 10
    assert opener.writes(service) == before + 1  # one record for the whole batch
    settled = service.batch([("reconcile", (outcomes[0].reservation_id, 5, 0.0), {})])
    assert settled[0].agent_calls == 5
    snapshot = service.snapshot()
    opener.crash(service)  # a crash right after the answers: nothing is lost
    reopened = opener.service(clock)
    assert reopened.snapshot() == snapshot
    assert [r.task_id for r in reopened.open_reservations()] == ["c"]
    assert reopened.user_status("ada").daily.agents_used == 9
    reopened.close()


def test_a_batch_refuses_methods_outside_admission(opener: Opener) -> None:
    service = opener.service(FrozenClock(NOW))
    before = service.snapshot()
    with pytest.raises(InvalidInput) as err:
        service.batch(
            [
                ("reserve", ("ada", 1), {"tier": "user", "task_id": "a"}),
                ("restore", ({},), {}),
            ]
        )
    assert err.value.details["field"] == "calls[1].method"
    assert service.snapshot() == before  # nothing of the batch was applied
    service.close()


def test_the_service_answers_every_public_ledger_method(opener: Opener) -> None:
    from rlm.quotas.service import READS, WRITES

    public = {n for n in dir(QuotaLedger) if not n.startswith("_")}
    # The store's business, not callers'; apply_batch is answered as the service's batch.
    internal = {"restore", "pop_changes", "settings", "apply_batch"}
    assert public - internal == READS | WRITES  # a new ledger method must be classified
    assert not READS & WRITES
    service = opener.service(FrozenClock(NOW))
    assert service.reserve.__doc__ == QuotaLedger.reserve.__doc__  # the ledger's own docs
    for name in internal:
        with pytest.raises(AttributeError):
            getattr(service, name)
    # Reads write nothing; writes are stored before they answer.
    before = opener.writes(service)
    service.user_status("ada")
    assert opener.writes(service) == before
    service.set_user_config(_config("ada"))
    assert opener.writes(service) == before + 1
    service.close()
