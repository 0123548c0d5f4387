"""Schema migrations of the PostgreSQL state store, on a real throwaway PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest

from rlm.db import check_schema, known_migrations, migrate, redact, status, validate_database_url
from rlm.db.connect import connect, ensure_schema, open_checked
from rlm.db.migrations import Migration
from rlm.errors import InternalError, InvalidInput


def test_an_empty_database_has_every_migration_pending(postgres_url: str) -> None:
    with connect(postgres_url) as conn:
        found = status(conn)
        assert found.current == 0
        assert [m.version for m in found.pending] == [m.version for m in known_migrations()]
        with pytest.raises(InternalError, match="rlm db migrate"):
            check_schema(conn)


def test_migrate_applies_each_step_once(postgres_url: str) -> None:
    with connect(postgres_url) as conn:
        done = migrate(conn)
        assert [m.version for m in done] == list(range(1, len(known_migrations()) + 1))
        assert migrate(conn) == []  # nothing left
        found = check_schema(conn)
        assert found.current == found.latest == len(known_migrations())
        assert [v for v, _, _ in found.applied] == [m.version for m in done]
        assert conn.execute("SELECT rev FROM quota_meta").fetchall() == [(0,)]


def _counting_steps() -> tuple[Migration, ...]:
    # Applied twice, the first step would fail (CREATE TABLE twice) or count 2; the sleep holds
    # the first applier inside the step long enough for the second to arrive.
    return (
        Migration(1, "counter", "CREATE TABLE applied (n INT); SELECT pg_sleep(0.5);"),
        Migration(2, "count", "INSERT INTO applied VALUES (1);"),
    )


def test_a_migration_applied_twice_concurrently_is_applied_once(postgres_url: str) -> None:
    steps = _counting_steps()
    start = threading.Barrier(2)
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with connect(postgres_url) as conn:
                start.wait()
                results.append([m.version for m in migrate(conn, steps)])
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    # One caller applied both steps, the other found nothing to do.
    assert sorted(results) == [[], [1, 2]]
    with connect(postgres_url) as conn:
        assert conn.execute("SELECT count(*) FROM applied").fetchone() == (1,)
        assert status(conn, steps).current == 2


def test_a_newer_schema_is_refused(postgres_url: str) -> None:
    ensure_schema(postgres_url)
    with connect(postgres_url) as conn:
        conn.execute("INSERT INTO schema_migrations (version, name) VALUES (99, 'future')")
        with pytest.raises(InternalError, match="newer than this release") as err:
            check_schema(conn)
        assert err.value.details["schemaVersion"] == 99
        with pytest.raises(InternalError, match="refusing to migrate"):
            migrate(conn)
    with pytest.raises(InternalError, match="newer"):
        open_checked(postgres_url)


def test_known_migrations_refuse_gaps_and_bad_names(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "0003_c.sql").write_text("SELECT 1;")
    with pytest.raises(InternalError, match="without gaps"):
        known_migrations(tmp_path)
    (tmp_path / "0003_c.sql").unlink()
    (tmp_path / "2_b.sql").write_text("SELECT 1;")
    with pytest.raises(InternalError, match="NNNN_name"):
        known_migrations(tmp_path)


def test_a_failed_step_leaves_the_version_before_it(postgres_url: str) -> None:
    steps = (
        Migration(1, "ok", "CREATE TABLE one (n INT);"),
        Migration(2, "broken", "CREATE TABLE two (n INT); SELECT * FROM missing_table;"),
    )
    with connect(postgres_url) as conn:
        with pytest.raises(psycopg.errors.UndefinedTable):
            migrate(conn, steps)
        found = status(conn, steps)
        assert found.current == 1
        assert conn.execute("SELECT to_regclass('two')").fetchone() == (None,)
        # The advisory lock was let go: another migrate does not hang.
        with pytest.raises(psycopg.errors.UndefinedTable):
            migrate(conn, steps)


def test_urls_are_checked_and_passwords_hidden() -> None:
    assert validate_database_url(" postgresql://u@h/db ") == "postgresql://u@h/db"
    for bad in ("sqlite:///x.db", "mysql://u@h/db", "postgresql://u@h"):
        with pytest.raises(InvalidInput):
            validate_database_url(bad)
    assert redact("postgresql://rlm:s3cret@db:5432/rlm") == "postgresql://rlm:***@db:5432/rlm"
    assert redact("postgresql://rlm@db/rlm") == "postgresql://rlm@db/rlm"


def test_an_unreachable_server_is_named_without_its_password() -> None:
    with pytest.raises(InternalError) as err:
        connect("postgresql://rlm:s3cret@127.0.0.1:1/rlm")
    assert "s3cret" not in str(err.value)
    assert "rlm:***@127.0.0.1:1" in str(err.value)


def _rlm(url: str | None, *argv: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RLM_")}
    env["HOME"] = str(home)
    if url is not None:
        env["RLM_DATABASE_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "rlm", *argv], env=env, capture_output=True, text=True, timeout=60
    )


def test_the_cli_migrates_and_reports(postgres_url: str, tmp_path: Path) -> None:
    before = _rlm(postgres_url, "db", "status", home=tmp_path)
    assert before.returncode == 0, before.stderr
    assert json.loads(before.stdout)["schemaVersion"] == 0
    assert len(json.loads(before.stdout)["pending"]) == len(known_migrations())
    done = _rlm(postgres_url, "db", "migrate", home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["schemaVersion"] == len(known_migrations())
    again = _rlm(postgres_url, "db", "migrate", home=tmp_path)
    assert json.loads(again.stdout)["applied"] == []
    after = json.loads(_rlm(postgres_url, "db", "status", home=tmp_path).stdout)
    assert after["pending"] == [] and not after["newerThanCode"]
    with connect(postgres_url) as conn:
        conn.execute("INSERT INTO schema_migrations (version, name) VALUES (99, 'future')")
    newer = _rlm(postgres_url, "db", "status", home=tmp_path)
    assert newer.returncode == 2 and json.loads(newer.stdout)["newerThanCode"] is True
    refused = _rlm(postgres_url, "db", "migrate", home=tmp_path)
    assert refused.returncode == 2
    assert json.loads(refused.stderr.strip().splitlines()[-1])["error"]["code"] == "INTERNAL_ERROR"


def test_the_cli_says_there_is_nothing_to_migrate_without_a_url(tmp_path: Path) -> None:
    result = _rlm(None, "db", "status", home=tmp_path)
    assert result.returncode == 2
    error = json.loads(result.stderr.strip().splitlines()[-1])["error"]
    assert error["code"] == "INVALID_INPUT" and "RLM_DATABASE_URL" in error["message"]
