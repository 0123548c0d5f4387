"""The SQLite-shaped stores' SQL on PostgreSQL (:mod:`rlm.db.compat`), against a real server."""

from __future__ import annotations

import sqlite3
import threading
import time

import psycopg
import pytest

from rlm.db.compat import PgIntegrityError, PgOperationalError, open_compat, translate
from rlm.db.connect import ensure_schema


def test_placeholders_and_literals_are_translated() -> None:
    assert translate("SELECT * FROM t WHERE a = ? AND b LIKE 'x%?'") == (
        "SELECT * FROM t WHERE a = %s AND b LIKE 'x%%?'",
        [],
    )
    assert translate("SELECT :since::bigint, x FROM t WHERE y > :since") == (
        "SELECT %(since)s::bigint, x FROM t WHERE y > %(since)s",
        [],
    )
    assert translate("SELECT x FROM t WHERE a > ? ORDER BY x LIMIT ?") == (
        "SELECT x FROM t WHERE a > %s ORDER BY x LIMIT %s",
        [1],
    )


@pytest.fixture
def conn(postgres_url: str) -> sqlite3.Connection:
    ensure_schema(postgres_url)
    return open_compat(postgres_url, "state.db")


def test_insert_or_replace_or_ignore_and_limit_minus_one(conn: sqlite3.Connection) -> None:
    conn.execute("INSERT OR REPLACE INTO webhook_meta (key, value) VALUES ('a', ?)", (1,))
    conn.execute("INSERT OR REPLACE INTO webhook_meta (key, value) VALUES ('a', ?)", (2,))
    conn.execute("INSERT OR IGNORE INTO webhook_meta (key, value) VALUES ('a', ?)", (3,))
    conn.execute("INSERT OR IGNORE INTO webhook_meta VALUES ('b', ?)", (4,))
    rows = conn.execute("SELECT key, value FROM webhook_meta ORDER BY key LIMIT ?", (-1,))
    assert rows.fetchall() == [("a", 2), ("b", 4)]
    # SUM over BIGINT is NUMERIC in PostgreSQL: it loads as an int, as SQLite returns it.
    (total,) = conn.execute("SELECT SUM(value) FROM webhook_meta").fetchone()
    assert total == 6 and isinstance(total, int)
    columns = [r[1] for r in conn.execute("PRAGMA table_info(webhook_meta)").fetchall()]
    assert columns == ["key", "value"]
    assert conn.execute("PRAGMA journal_mode=WAL").fetchall() == []  # nothing to do


def test_a_rolled_back_transaction_leaves_nothing(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")
    assert conn.in_transaction
    conn.execute("INSERT INTO webhook_meta (key, value) VALUES ('x', 1)")
    conn.execute("ROLLBACK")
    assert not conn.in_transaction
    assert conn.execute("SELECT COUNT(*) FROM webhook_meta").fetchone() == (0,)
    conn.execute("BEGIN")
    conn.execute("COMMIT")  # an empty transaction sends nothing and ends cleanly
    assert not conn.in_transaction


def test_errors_are_sqlites_kinds(conn: sqlite3.Connection) -> None:
    conn.execute("INSERT INTO webhook_meta (key, value) VALUES ('x', 1)")
    with pytest.raises(sqlite3.IntegrityError) as dup:
        conn.execute("INSERT INTO webhook_meta (key, value) VALUES ('x', 1)")
    assert isinstance(dup.value, PgIntegrityError)
    with pytest.raises(sqlite3.OperationalError) as bad:
        conn.execute("SELECT nope FROM webhook_meta")
    assert isinstance(bad.value, PgOperationalError)


def test_writers_of_one_state_file_are_serialised_across_connections(postgres_url: str) -> None:
    """Two connections standing for state.db (two instances): a read-modify-write in one
    transaction never interleaves with the other's, as under SQLite's file lock."""
    ensure_schema(postgres_url)
    first = open_compat(postgres_url, "state.db")
    second = open_compat(postgres_url, "state.db")
    first.execute("INSERT INTO webhook_meta (key, value) VALUES ('n', 0)")

    def bump(conn: sqlite3.Connection) -> None:
        for _ in range(20):
            conn.execute("BEGIN IMMEDIATE")
            (value,) = conn.execute("SELECT value FROM webhook_meta WHERE key = 'n'").fetchone()
            time.sleep(0.001)  # the other writer would read the same value here, unlocked
            conn.execute("UPDATE webhook_meta SET value = ? WHERE key = 'n'", (value + 1,))
            conn.execute("COMMIT")

    threads = [threading.Thread(target=bump, args=(c,)) for c in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert first.execute("SELECT value FROM webhook_meta WHERE key = 'n'").fetchone() == (40,)
    first.close()
    second.close()


def _backend(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT pg_backend_pid()").fetchone()[0])


def test_stores_of_a_process_share_pooled_connections(postgres_url: str) -> None:
    """Statements outside a transaction borrow a connection and give it back: two stores
    used one after the other run on one server backend; a transaction keeps its own."""
    ensure_schema(postgres_url)
    tasks, outbox = open_compat(postgres_url, "state.db"), open_compat(postgres_url, "state.db")
    shared = _backend(tasks)
    assert _backend(outbox) == shared
    tasks.execute("BEGIN IMMEDIATE")
    tasks.execute("INSERT INTO webhook_meta (key, value) VALUES ('pooled', 1)")
    assert _backend(tasks) == shared  # held from BEGIN to COMMIT
    other = _backend(outbox)  # borrowed meanwhile: another connection of the pool
    assert other != shared
    assert outbox.execute("SELECT COUNT(*) FROM webhook_meta").fetchone() == (0,)
    tasks.execute("COMMIT")
    assert outbox.execute("SELECT COUNT(*) FROM webhook_meta").fetchone() == (1,)
    tasks.close()
    outbox.close()


def test_a_dropped_connection_fails_one_call(postgres_url: str) -> None:
    ensure_schema(postgres_url)
    conn = open_compat(postgres_url, "state.db")
    conn.execute("INSERT INTO webhook_meta (key, value) VALUES ('kept', 1)")
    with psycopg.connect(postgres_url, autocommit=True) as admin:  # the pool's backends
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    assert killed is not None and killed[0] >= 1
    with pytest.raises(sqlite3.OperationalError):
        conn.execute("SELECT value FROM webhook_meta")
    # The pool dropped the dead connection: the next call runs on a new one.
    assert conn.execute("SELECT value FROM webhook_meta").fetchall() == [(1,)]
