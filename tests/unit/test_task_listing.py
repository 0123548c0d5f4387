"""Task lists filtered and paged in the store (SQLite and PostgreSQL): what ``GET /tasks`` runs."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from rlm.errors import InvalidInput
from rlm.tasks import TaskRecord, TaskStore
from rlm.tasks.listing import TaskCursor, TaskQuery

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)

#: (task id, owner, org, status, type, operation, minutes after T0)
_ROWS: list[tuple[str, str, str | None, str, str, str | None, int]] = [
    ("a-sum-done", "ada", "acme", "completed", "recursive", "sum", 0),
    ("a-sort-fail", "ada", "acme", "failed", "parallel", "sort", 1),
    ("a-rlm-run", "ada", "acme", "running", "sequential", "rlm", 2),
    ("a-sum-pend", "ada", "acme", "pending", "recursive", "sum", 3),
    ("b-sum-done", "bob", "acme", "completed", "recursive", "sum", 4),
    ("c-sum-done", "cyd", "other", "completed", "recursive", "sum", 5),
    ("a-list-input", "ada", "acme", "cancelled", "parallel", None, 6),
    # Created at the same instant as a-list-input: the task id breaks the tie.
    ("a-tie", "ada", "acme", "completed", "recursive", "max", 6),
]


def _record(row: tuple[str, str, str | None, str, str, str | None, int]) -> TaskRecord:
    task_id, owner, org, status, type_, operation, minutes = row
    source: Any = [1, 2, 3] if operation is None else {"operation": operation, "items": "3 items"}
    return TaskRecord(
        task_id=task_id,
        status=status,  # type: ignore[arg-type]
        created_at=T0 + timedelta(minutes=minutes),
        type=type_,
        description="d",
        priority="normal",
        owner_id=owner,
        org_id=org,
        request={"type": type_, "input": source},
        planned_calls=4,
        instance_id="i",
    )


@pytest.fixture
def store(database_url: str | None, tmp_path: Path) -> TaskStore:
    opened = TaskStore(tmp_path / "state.db", database_url=database_url)
    for row in _ROWS:
        opened.put(_record(row))
    return opened


def _ids(records: list[TaskRecord]) -> list[str]:
    return [r.task_id for r in records]


def _expected(**match: Any) -> list[str]:
    """The rows' ids, newest first (ties: greater id first), keeping those ``match`` picks."""
    keys = ("task_id", "owner", "org", "status", "type", "operation", "minutes")
    rows = [dict(zip(keys, row, strict=True)) for row in _ROWS]
    picked = [r for r in rows if all(test(r[k]) for k, test in match.items())]
    picked.sort(key=lambda r: (r["minutes"], r["task_id"]), reverse=True)
    return [r["task_id"] for r in picked]


def test_each_filter_runs_in_the_store(store: TaskStore) -> None:
    def find(**kw: Any) -> list[str]:
        return _ids(store.find(TaskQuery(limit=100, **kw)))

    assert find() == _expected()
    assert find(statuses=frozenset({"completed"})) == _expected(status=lambda s: s == "completed")
    assert find(statuses=frozenset({"pending", "running"})) == ["a-sum-pend", "a-rlm-run"]
    assert find(type="parallel") == _expected(type=lambda t: t == "parallel")
    assert find(operation="sum") == _expected(operation=lambda o: o == "sum")
    assert find(operation="rlm") == ["a-rlm-run"]
    # A list input names no operation: no operation filter matches it.
    assert "a-list-input" not in find(operation="None") + find(operation="sum")
    since, until = T0 + timedelta(minutes=1), T0 + timedelta(minutes=4)
    # since is inclusive (the task created exactly then is in), until exclusive.
    assert find(since=since, until=until) == _expected(minutes=lambda m: 1 <= m < 4)
    assert find(since=since.astimezone(timezone(timedelta(hours=2)))) == _expected(
        minutes=lambda m: m >= 1
    )
    assert find(since=until, until=since) == []  # an empty window is no task, not an error
    combined = find(statuses=frozenset({"completed"}), type="recursive", operation="sum", since=T0)
    assert combined == ["c-sum-done", "b-sum-done", "a-sum-done"]


def test_reach_is_an_owner_or_an_owner_and_its_org(store: TaskStore) -> None:
    everything = TaskQuery(limit=100)
    assert _ids(store.find(everything, owner_id="bob")) == ["b-sum-done"]
    # An org admin: its own tasks and its org's, never another org's.
    admin = _ids(store.find(everything, owner_id="bob", org_id="acme"))
    assert admin == _expected(org=lambda o: o == "acme")
    assert _ids(store.find(everything, owner_id="cyd", org_id="other")) == ["c-sum-done"]
    # Filters apply inside the reach, not beside it.
    running = TaskQuery(statuses=frozenset({"completed"}), limit=100)
    assert _ids(store.find(running, owner_id="cyd", org_id="other")) == ["c-sum-done"]
    assert _ids(store.find(running, owner_id="bob")) == ["b-sum-done"]


@pytest.mark.parametrize("limit", [1, 2, 3])
def test_pages_walk_every_task_once_in_order(store: TaskStore, limit: int) -> None:
    query = TaskQuery(statuses=frozenset({"completed", "cancelled", "failed"}), limit=limit)
    seen: list[str] = []
    for _ in range(len(_ROWS) + 1):
        rows = store.find(query)
        assert len(rows) <= limit + 1  # one more than asked tells a next page exists
        seen += _ids(rows[:limit])
        if len(rows) <= limit:
            break
        last = rows[limit - 1]
        # The cursor travels as text: encode and decode it as the API does.
        cursor = TaskCursor.decode(TaskCursor(last.created_at, last.task_id).encode())
        query = query.evolve(after=cursor)
    assert seen == _expected(status=lambda s: s in {"completed", "cancelled", "failed"})


def test_a_task_created_after_the_first_page_does_not_shift_the_next(store: TaskStore) -> None:
    first = store.find(TaskQuery(limit=2))
    assert _ids(first[:2]) == _expected()[:2]
    newest = ("z-new", "ada", "acme", "completed", "recursive", "sum", 60)
    store.put(_record(newest))
    after = TaskCursor(first[1].created_at, first[1].task_id)
    assert _ids(store.find(TaskQuery(limit=100, after=after))) == _expected()[2:]


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "not a cursor!",
        "1772366400000000",  # no task id
        "-task-1",  # no time
        "1772366400000000-",
        "1772366400000000-a b",
        "123456789012345678-t",  # past the 17 digits any stored time fits in
        "1772366400000000-" + "t" * 201,
        "eyJ4IjoxfQ",
    ],
)
def test_a_cursor_the_api_did_not_hand_out_is_refused(cursor: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        TaskCursor.decode(cursor)
    assert refused.value.details.get("field") == "cursor"


def test_a_cursor_round_trips() -> None:
    cursor = TaskCursor(T0 + timedelta(microseconds=5), "task-42")
    assert cursor.encode() == "1772366400000005-task-42"
    assert TaskCursor.decode(cursor.encode()) == cursor
    # Any time a cursor's form allows is a position (a fuzzer's cursor gets a page).
    assert TaskCursor.decode("0-x").created_at == datetime(1970, 1, 1, tzinfo=UTC)
    assert TaskCursor.decode("9" * 17 + "-x").created_at.year == 5138


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"statuses": frozenset({"done"})}, "status"),
        ({"type": "fractal"}, "type"),
        ({"since": datetime(2026, 1, 1)}, "since"),  # no offset
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
    ],
)
def test_a_bad_query_is_refused(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        TaskQuery(**changes)
    assert refused.value.details.get("field") == field


def test_many_tasks_at_one_instant_page_by_id(database_url: str | None, tmp_path: Path) -> None:
    opened = TaskStore(tmp_path / "same.db", database_url=database_url)
    ids = [f"t{i:02d}" for i in range(7)]
    for task_id in ids:
        opened.put(_record((task_id, "ada", None, "completed", "recursive", "sum", 0)))
    query, seen = TaskQuery(limit=3), []
    for _ in itertools.count():
        rows = opened.find(query)
        seen += _ids(rows[:3])
        if len(rows) <= 3:
            break
        query = query.evolve(after=TaskCursor(rows[2].created_at, rows[2].task_id))
    assert seen == sorted(ids, reverse=True)


@pytest.mark.parametrize(
    ("owner_id", "org_id"), [(None, "acme"), ("ada", "acme")], ids=["org", "admin"]
)
def test_an_org_list_reads_an_index_not_every_task(
    tmp_path: Path, owner_id: str | None, org_id: str
) -> None:
    import sqlite3

    from rlm.tasks.listing import where

    TaskStore(tmp_path / "state.db")  # creates the schema
    sql, args = where(TaskQuery(limit=10), owner_id=owner_id, org_id=org_id, on_postgres=False)
    with sqlite3.connect(tmp_path / "state.db") as conn:
        plan = " | ".join(
            row[-1] for row in conn.execute("EXPLAIN QUERY PLAN SELECT * FROM tasks " + sql, args)
        )
    assert "tasks_org" in plan, plan
    assert "SCAN tasks" not in plan.replace("SCAN tasks USING", ""), plan
