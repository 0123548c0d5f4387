"""Task events in the state file: round trips, batched writes, pruning, and the made-up end."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rlm.models.tasks import ExecuteResponse
from rlm.tasks import TaskRecord, TaskStore
from rlm.tasks.event_store import EventWriter, stored_events, terminal_event
from rlm.tasks.events import TERMINAL_EVENT, EventLog, TaskEvent


def _record(task_id: str, status: str = "running", **changes: object) -> TaskRecord:
    record = TaskRecord(
        task_id=task_id,
        status=status,  # type: ignore[arg-type]
        created_at=datetime.now(UTC),
        type="recursive",
        description="d",
        priority="normal",
        owner_id="alice",
        instance_id="i1",
    )
    return record.evolve(**changes)


def _result(task_id: str) -> ExecuteResponse:
    return ExecuteResponse(
        task_id=task_id,
        status="completed",
        output=2**70,  # beyond 64 bits: stored as JSON all the same
        execution_time_ms=1.0,
        agent_calls=1,
        decomposition_depth=0,
        success=True,
    )


def _events(*types: str, first: int = 1) -> list[TaskEvent]:
    return [
        TaskEvent(first + i, t, {"n": first + i}, 1_700_000_000.0 + i) for i, t in enumerate(types)
    ]


def test_events_round_trip_with_their_record_and_after_reopening(
    database_url: str | None, tmp_path: Path
) -> None:
    db = tmp_path / "state.db"
    store = TaskStore(db, database_url=database_url)
    store.put(_record("t1"), _events("task.started", "rlm.turn", "rlm.cell"))
    end = TaskEvent(
        4, TERMINAL_EVENT, {"status": "completed", "result": _result("t1").to_wire()}, 5.0
    )
    store.put(_record("t1", "completed", completed_at=datetime.now(UTC)), [end])
    store.close()

    again = TaskStore(db, database_url=database_url)
    events = again.events("t1")
    assert [(e.seq, e.type) for e in events] == [
        (1, "task.started"),
        (2, "rlm.turn"),
        (3, "rlm.cell"),
        (4, TERMINAL_EVENT),
    ]
    assert events[0] == _events("task.started")[0]
    assert events[-1].data["result"]["output"] == 2**70
    assert [e.seq for e in again.events("t1", after=2)] == [3, 4]
    assert [e.seq for e in again.events("t1", after=0, limit=2)] == [1, 2]
    assert [e.type for e in again.events("t1", trajectory=True)] == [
        "rlm.turn",
        "rlm.cell",
        TERMINAL_EVENT,
    ]
    assert again.last_event("t1") == (4, TERMINAL_EVENT) and again.last_event("nope") is None
    assert again.events("nope") == []


def test_a_batch_writes_several_tasks_at_once_and_a_repeat_changes_nothing(
    database_url: str | None, tmp_path: Path
) -> None:
    store = TaskStore(tmp_path / "state.db", database_url=database_url)
    batch = {"a": _events("task.started", "task.progress"), "b": _events("task.started")}
    store.write_events(batch)
    store.write_events({"a": [TaskEvent(2, "other", {}, 0.0)]})  # seq 2 is taken: ignored
    assert [e.type for e in store.events("a")] == ["task.started", "task.progress"]
    assert [e.seq for e in store.events("b")] == [1]


class _Counting:
    """A store write that counts its transactions (and can be made to fail)."""

    def __init__(self, store: TaskStore) -> None:
        self.store = store
        self.batches: list[dict[str, list[int]]] = []
        self.fail = False

    def __call__(self, batch: Mapping[str, Sequence[TaskEvent]]) -> None:
        if self.fail:
            raise OSError("disk full")
        self.batches.append({t: [e.seq for e in events] for t, events in batch.items()})
        self.store.write_events(batch)


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_writer_flushes_every_n_events_in_one_transaction(
    database_url: str | None, tmp_path: Path
) -> None:
    write = _Counting(TaskStore(tmp_path / "state.db", database_url=database_url))
    clock = _Clock()
    writer = EventWriter(write, max_pending=4, interval_s=0.25, clock=clock)
    logs = [EventLog("t0"), EventLog("t1")]
    due = []
    for i in range(4):
        log = logs[i % 2]
        log.append("task.progress", {"i": i})
        due.append(writer.note(log))
    assert due == [False, False, False, True]  # the fourth event: due now
    assert writer.pending == 4
    assert writer.flush() == 4
    assert write.batches == [{"t0": [1, 2], "t1": [1, 2]}]
    assert writer.pending == 0 and not writer.due()
    assert logs[0].unsaved() == [] and logs[1].unsaved() == []


def test_the_writer_flushes_an_event_once_it_waited_the_interval(
    database_url: str | None, tmp_path: Path
) -> None:
    write = _Counting(TaskStore(tmp_path / "state.db", database_url=database_url))
    clock = _Clock()
    writer = EventWriter(write, max_pending=256, interval_s=0.25, clock=clock)
    log = EventLog("t", on_append=writer.note)
    log.append("task.started", {})
    clock.now = 0.2
    log.append("task.progress", {})
    assert not writer.due()
    clock.now = 0.25
    assert writer.due()
    assert writer.flush() == 2 and write.batches == [{"t": [1, 2]}]
    assert writer.flush() == 0 and len(write.batches) == 1  # nothing new: no transaction


def test_a_failed_write_keeps_the_events_for_the_next_flush(
    database_url: str | None, tmp_path: Path
) -> None:
    write = _Counting(TaskStore(tmp_path / "state.db", database_url=database_url))
    writer = EventWriter(write, max_pending=256, interval_s=0.25, clock=_Clock())
    log = EventLog("t", on_append=writer.note)
    log.append("task.started", {})
    write.fail = True
    with pytest.raises(OSError, match="disk full"):
        writer.flush()
    write.fail = False
    log.append("task.progress", {})
    assert writer.flush() == 2 and write.batches == [{"t": [1, 2]}]


def test_a_forgotten_log_is_left_to_its_final_record(
    database_url: str | None, tmp_path: Path
) -> None:
    write = _Counting(TaskStore(tmp_path / "state.db", database_url=database_url))
    writer = EventWriter(write, max_pending=256, interval_s=0.25, clock=_Clock())
    ended, running = (
        EventLog("ended", on_append=writer.note),
        EventLog("run", on_append=writer.note),
    )
    ended.append("task.started", {})
    running.append("task.started", {})
    writer.forget(ended)
    assert writer.flush() == 1 and write.batches == [{"run": [1]}]


def test_only_new_events_of_a_log_are_written_again(
    database_url: str | None, tmp_path: Path
) -> None:
    store = TaskStore(tmp_path / "state.db", database_url=database_url)
    write = _Counting(store)
    writer = EventWriter(write, max_pending=256, interval_s=0.25, clock=_Clock())
    log = EventLog("t", on_append=writer.note)
    log.append("task.started", {})
    writer.flush()
    log.append("task.progress", {})
    log.append("task.progress", {})
    writer.flush()
    assert write.batches == [{"t": [1]}, {"t": [2, 3]}]
    assert [e.seq for e in store.events("t")] == [1, 2, 3]


def test_pruning_a_task_takes_its_events_with_it(database_url: str | None, tmp_path: Path) -> None:
    store = TaskStore(tmp_path / "state.db", database_url=database_url)
    now = datetime.now(UTC)
    old = now - timedelta(days=40)
    store.put(
        _record("old", "completed", completed_at=old), _events("task.started", TERMINAL_EVENT)
    )
    store.put(
        _record("new", "completed", completed_at=now), _events("task.started", TERMINAL_EVENT)
    )
    store.put(_record("live"), _events("task.started"))
    assert store.prune(now - timedelta(days=30)) == 1
    assert store.get("old") is None and store.events("old") == []
    assert store.get("new") is not None and len(store.events("new")) == 2
    assert store.get("live") is not None and len(store.events("live")) == 1
    assert store.delete(["new", "live"]) == 2
    assert store.events("new") == [] and store.events("live") == []


def test_an_ended_task_without_a_stored_end_gets_one_from_its_record() -> None:
    record = _record("t", "failed", completed_at=datetime(2026, 1, 1, tzinfo=UTC))
    record = record.evolve(result=_result("t").model_copy(update={"status": "failed"}))
    end = terminal_event(record, 7)
    assert end.seq == 7 and end.type == TERMINAL_EVENT
    assert end.data["status"] == "failed" and end.data["result"]["taskId"] == "t"
    assert end.to_wire()["timestamp"] == "2026-01-01T00:00:00Z"


def _ended(store: TaskStore, task_id: str, **changes: object) -> TaskRecord:
    record = _record(task_id, "completed", completed_at=datetime.now(UTC), **changes)
    store.put(record.evolve(result=_result(task_id)))
    return record.evolve(result=_result(task_id))


def test_an_ended_tasks_stored_events_end_with_its_stored_end(
    database_url: str | None, tmp_path: Path
) -> None:
    store = TaskStore(tmp_path / "state.db", database_url=database_url)
    record = _ended(store, "t")
    store.write_events({"t": _events("task.started", "task.progress", TERMINAL_EVENT)})
    assert [e.seq for e in stored_events(store, record, 0, None)[0]] == [1, 2, 3]
    assert stored_events(store, record, 0, None)[1] is True
    # Pages: not ended until the page that holds the end.
    page, ended = stored_events(store, record, 0, 2)
    assert [e.seq for e in page] == [1, 2] and not ended
    page, ended = stored_events(store, record, 2, 2)
    assert [e.seq for e in page] == [3] and ended
    # Resuming at (or past) the end: nothing more, and nothing made up.
    assert stored_events(store, record, 3, None) == ([], True)
    assert stored_events(store, record, 9, None) == ([], True)


def test_an_interrupted_task_ends_with_an_end_made_from_its_record(
    database_url: str | None, tmp_path: Path
) -> None:
    store = TaskStore(tmp_path / "state.db", database_url=database_url)
    record = _ended(store, "t")
    store.write_events({"t": _events("task.started", "rlm.turn")})
    events, ended = stored_events(store, record, 0, None)
    assert ended and [e.type for e in events] == ["task.started", "rlm.turn", TERMINAL_EVENT]
    assert events[-1].seq == 3 and events[-1].data["result"]["taskId"] == "t"
    assert stored_events(store, record, 2, None)[0] == events[2:]
    assert stored_events(store, record, 3, None) == ([], True)
    trajectory, _ = stored_events(store, record, 0, None, trajectory=True)
    assert [e.type for e in trajectory] == ["rlm.turn", TERMINAL_EVENT]
    # A task that never stored an event still ends, with event 1.
    bare = _ended(store, "bare")
    assert [(e.seq, e.type) for e in stored_events(store, bare, 0, None)[0]] == [
        (1, TERMINAL_EVENT)
    ]


def test_a_task_running_elsewhere_is_not_at_its_end(
    database_url: str | None, tmp_path: Path
) -> None:
    store = TaskStore(tmp_path / "state.db", database_url=database_url)
    record = _record("t")
    store.put(record, _events("task.started"))
    assert [e.seq for e in stored_events(store, record, 0, None)[0]] == [1]
    assert stored_events(store, record, 1, None) == ([], False)
