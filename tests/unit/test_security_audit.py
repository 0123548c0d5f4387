"""The audit log: hash chain (edits and deletions found, the first bad record named), file
modes, pages, retried batches, policy changes recorded atomically, and ``rlm security``.

Tests taking ``database_url`` run on both state stores: ``security.db`` under the test's
directory, and a fresh PostgreSQL database (where two services stand for two instances)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rlm.config import get_settings
from rlm.errors import InternalError, InvalidInput
from rlm.models.security import SecurityPolicyPatch, SecurityPolicyUpdate
from rlm.security.events import SecurityEventIn
from rlm.security.service import SecurityService
from rlm.security.store import open_security_store


def _event(i: int, org: str = "acme", severity: str = "low") -> SecurityEventIn:
    return SecurityEventIn.of(
        "rate.limited",
        message=f"request {i} refused",
        org_id=org,
        user_id=f"u{i}",
        severity=severity,  # type: ignore[arg-type]
        details={"i": i},
    )


@pytest.fixture
def service(tmp_path: Path, database_url: str | None) -> Iterator[SecurityService]:
    svc = SecurityService(tmp_path, database_url=database_url)
    yield svc
    svc.close()


def _tamper(state: Path, database_url: str | None, *sql: str) -> None:
    """What an attacker with the file (or the database's owner role) can do: drop the
    append-only triggers, then change rows."""
    if database_url is None:
        conn = sqlite3.connect(state / "security.db")
        conn.execute("DROP TRIGGER IF EXISTS events_append_only_update")
        conn.execute("DROP TRIGGER IF EXISTS events_append_only_delete")
        for statement in sql:
            conn.execute(statement)
        conn.commit()
        conn.close()
        return
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as pg:
        pg.execute("DROP TRIGGER events_append_only ON events")
        for statement in sql:
            pg.execute(statement.encode())


def test_files_are_private(tmp_path: Path) -> None:
    os.umask(0o022)
    svc = SecurityService(tmp_path / "state")
    svc.record([_event(1)])
    for name in ("security.db", "security.db-wal", "audit-key"):
        mode = stat.S_IMODE((tmp_path / "state" / name).stat().st_mode)
        assert mode == 0o600, (name, oct(mode))
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    svc.close()


def test_a_readable_key_is_refused(tmp_path: Path) -> None:
    SecurityService(tmp_path).close()
    (tmp_path / "audit-key").chmod(0o644)
    with pytest.raises(PermissionError, match="readable by others"):
        SecurityService(tmp_path)


def test_the_log_is_append_only(
    service: SecurityService, tmp_path: Path, database_url: str | None
) -> None:
    service.record([_event(1)])
    conn = open_security_store(tmp_path, database_url)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE events SET message = 'x'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM events")
    if database_url is not None:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("TRUNCATE events")
    conn.close()
    assert service.verify().records == 1


def test_an_intact_chain_verifies(service: SecurityService) -> None:
    for i in range(3):
        service.record([_event(3 * i + j) for j in range(3)])
    report = service.verify()
    assert report.ok and report.records == 9 and report.head_seq == 9
    assert report.first_bad_seq is None


@pytest.mark.parametrize(
    ("sql", "bad_seq", "reason"),
    [
        ("UPDATE events SET message = 'nothing happened' WHERE seq = 4", 4, "was edited"),
        ("UPDATE events SET severity = 'info' WHERE seq = 2", 2, "was edited"),
        ("UPDATE events SET org_id = 'other' WHERE seq = 6", 6, "was edited"),
        ("DELETE FROM events WHERE seq = 3", 3, "is missing"),
        ("DELETE FROM events WHERE seq >= 5", 5, "newest were deleted"),
        ("UPDATE head SET seq = 4", None, "head was altered"),
    ],
)
def test_tampering_is_found_and_the_first_bad_record_named(
    service: SecurityService,
    tmp_path: Path,
    database_url: str | None,
    sql: str,
    bad_seq: int | None,
    reason: str,
) -> None:
    service.record([_event(i) for i in range(6)])
    _tamper(tmp_path, database_url, sql)
    report = SecurityService(tmp_path, database_url=database_url).verify()
    assert not report.ok
    assert report.first_bad_seq == bad_seq
    assert reason in (report.reason or "")


def test_a_rechained_edit_is_still_found(
    service: SecurityService, tmp_path: Path, database_url: str | None
) -> None:
    # Without the key, recomputing a plain hash after an edit does not help.
    import hashlib

    service.record([_event(i) for i in range(3)])
    fake = hashlib.sha256(b"forged").hexdigest()
    _tamper(
        tmp_path,
        database_url,
        f"UPDATE events SET message = 'x', digest = '{fake}' WHERE seq = 2",
        f"UPDATE events SET prev = '{fake}' WHERE seq = 3",
    )
    report = SecurityService(tmp_path, database_url=database_url).verify()
    assert (report.ok, report.first_bad_seq) == (False, 2)


def test_pages_are_newest_first_per_org_with_cursors(service: SecurityService) -> None:
    service.record([_event(i, "acme", "high" if i % 2 else "low") for i in range(7)])
    service.record([_event(99, "other")])
    first = service.events("acme", limit=3)
    assert [e.details["i"] for e in first.events] == [6, 5, 4]
    assert first.next_cursor is not None
    second = service.events("acme", limit=3, cursor=first.next_cursor)
    assert [e.details["i"] for e in second.events] == [3, 2, 1]
    last = service.events("acme", limit=3, cursor=second.next_cursor)
    assert [e.details["i"] for e in last.events] == [0] and last.next_cursor is None
    assert {e.details["i"] for e in service.events("acme", severities=["high"]).events} == {
        1,
        3,
        5,
    }
    assert [e.details["i"] for e in service.events("other").events] == [99]
    future = datetime.now(UTC) + timedelta(days=1)
    assert service.events("acme", since=future).events == []
    with pytest.raises(InvalidInput):
        service.events("acme", cursor="not-a-cursor")


def test_a_retried_batch_is_not_appended_twice(service: SecurityService) -> None:
    batch = [_event(i) for i in range(3)]
    assert service.record(batch) == 3
    assert service.record(batch) == 0
    assert service.verify().records == 3


def test_policy_changes_commit_with_their_record(service: SecurityService) -> None:
    changed = service.update_policy(
        "acme", "input-size", SecurityPolicyPatch(settings={"maxChars": 50}), by="ada"
    )
    assert changed.settings is not None and changed.settings["maxChars"] == 50
    put = service.update_policy(
        "acme", "input-size", SecurityPolicyUpdate(enabled=False, priority=5), by="ada"
    )
    assert put.enabled is False and put.settings is not None
    assert put.settings["maxChars"] == 1_000_000  # PUT: settings not given are the defaults
    with pytest.raises(InvalidInput):  # refused: nothing stored, nothing recorded
        service.update_policy("acme", "audit-log", SecurityPolicyPatch(enabled=False), by="ada")
    events = service.events("acme").events
    assert [e.details["method"] for e in events] == ["PUT", "PATCH"]
    assert events[0].details["changes"]["enabled"] == [True, False]
    assert service.policies("other").policies[0].updated_by is None  # per org
    assert service.verify().ok


def _cli(
    state: Path, monkeypatch: pytest.MonkeyPatch, *argv: str, database_url: str | None = None
) -> tuple[int, str]:
    import io
    import sys

    from rlm.cli import main

    monkeypatch.setenv("RLM_STATE_DIR", str(state))
    if database_url is None:
        monkeypatch.delenv("RLM_DATABASE_URL", raising=False)
    else:
        monkeypatch.setenv("RLM_DATABASE_URL", database_url)
    get_settings.cache_clear()
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    try:
        code = main(list(argv))
    finally:
        get_settings.cache_clear()
    return code, out.getvalue()


def test_rlm_security_verify_and_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str | None
) -> None:
    url = database_url
    svc = SecurityService(tmp_path, database_url=url)
    svc.record([_event(i, "acme") for i in range(4)] + [_event(9, "beta", "critical")])
    svc.close()
    code, out = _cli(tmp_path, monkeypatch, "security", "verify", database_url=url)
    assert code == 0 and json.loads(out)["ok"] is True and json.loads(out)["records"] == 5
    code, out = _cli(
        tmp_path,
        monkeypatch,
        *("security", "events", "--org", "acme", "--limit", "2"),
        database_url=url,
    )
    page = json.loads(out)
    assert code == 0 and [e["details"]["i"] for e in page["events"]] == [3, 2]
    code, out = _cli(
        tmp_path,
        monkeypatch,
        *("security", "events", "--cursor", page["nextCursor"], "--org", "acme"),
        database_url=url,
    )
    assert [e["details"]["i"] for e in json.loads(out)["events"]] == [1, 0]
    code, out = _cli(
        tmp_path, monkeypatch, "security", "events", "--severity", "critical", database_url=url
    )
    assert [e["orgId"] for e in json.loads(out)["events"]] == ["beta"]
    _tamper(tmp_path, url, "DELETE FROM events WHERE seq = 2")
    code, out = _cli(tmp_path, monkeypatch, "security", "verify", database_url=url)
    report = json.loads(out)
    assert code == 1 and report["firstBadSeq"] == 2 and "missing" in report["reason"]
    code, out = _cli(tmp_path, monkeypatch, "security", "policies", "acme", database_url=url)
    assert code == 0 and len(json.loads(out)) == 10


# -- PostgreSQL: several instances, one chain -----------------------------------------------


def _instances(tmp_path: Path, url: str, n: int) -> list[SecurityService]:
    """``n`` services on one database, each with its own state directory holding a copy of
    the first one's key (as an operator deploys instances)."""
    first = SecurityService(tmp_path / "i0", database_url=url)
    found = [first]
    for i in range(1, n):
        state = tmp_path / f"i{i}"
        state.mkdir(mode=0o700)
        shutil.copy2(tmp_path / "i0" / "audit-key", state / "audit-key")
        found.append(SecurityService(state, database_url=url))
    return found


def test_two_instances_appending_at_once_keep_one_chain(tmp_path: Path, postgres_url: str) -> None:
    from rlm.db.connect import ensure_schema

    ensure_schema(postgres_url)
    instances = _instances(tmp_path, postgres_url, 2)
    start = threading.Barrier(len(instances))

    def append(i: int, svc: SecurityService) -> None:
        start.wait()
        for batch in range(20):
            svc.record([_event(1000 * i + 10 * batch + j, f"org{i}") for j in range(3)])

    threads = [threading.Thread(target=append, args=(i, svc)) for i, svc in enumerate(instances)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    for svc in instances:  # either instance verifies the whole chain
        report = svc.verify()
        assert report.ok, report
        assert report.records == report.head_seq == 2 * 20 * 3
    # Each instance reads the other's records (one log, not two).
    assert len(instances[1].events("org0", limit=1000).events) == 60
    assert len(instances[0].events("org1", limit=1000).events) == 60
    for svc in instances:
        svc.close()


def test_a_policy_changed_on_one_instance_is_read_on_the_other(
    tmp_path: Path, postgres_url: str
) -> None:
    from rlm.db.connect import ensure_schema

    ensure_schema(postgres_url)
    a, b = _instances(tmp_path, postgres_url, 2)
    assert b.changed_policies("acme") == {}
    a.update_policy("acme", "input-size", SecurityPolicyPatch(settings={"maxChars": 50}), by="ada")
    seen = b.policies("acme").policies
    size = next(p for p in seen if p.policy_id == "input-size")
    assert size.settings is not None and size.settings["maxChars"] == 50
    # A patch through B builds on A's change (read under the write lock), not on a stale copy.
    b.update_policy("acme", "input-size", SecurityPolicyPatch(priority=7), by="bob")
    both = a.changed_policies("acme")["input-size"]
    assert both.priority == 7 and both.settings is not None and both.settings["maxChars"] == 50
    assert [e.user_id for e in a.events("acme").events] == ["bob", "ada"]
    assert a.verify().ok
    for svc in (a, b):
        svc.close()


def test_an_instance_with_another_key_is_refused(tmp_path: Path, postgres_url: str) -> None:
    from rlm.db.connect import ensure_schema

    ensure_schema(postgres_url)
    first = SecurityService(tmp_path / "a", database_url=postgres_url)
    first.record([_event(1)])
    with pytest.raises(InternalError, match="audit-key"):
        SecurityService(tmp_path / "b", database_url=postgres_url)  # a key of its own
    assert first.verify().ok and first.verify().records == 1
    first.close()
    # On PostgreSQL nothing of the log is written under the state directory but the key.
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["audit-key"]
