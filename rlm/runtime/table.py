"""The task table: the runs in flight, and the records of every task in the SQLite store.

A task's record is written when it is admitted and when it ends; in between, its live record
(progress, status) sits in its :class:`~rlm.runtime.run.Run` next to the scheduler's state, so
a status read needs neither a write nor a second actor.

The table also keeps each run's event log (:mod:`rlm.tasks.events`): every event is noted on
an :class:`~rlm.tasks.event_store.EventWriter`, which writes them to the store in batches
(every 256 events, or 250 ms after the first waiting one); a run's last events go with its
final record, in the same transaction, before the run leaves the table. Writes happen on the
core's loop, like the records': a batch is one small transaction, and doing it there keeps the
promise that an ended task's events are all in the store the moment the run is gone.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from rlm.admission import Admission, Viewer
from rlm.errors import RLMError
from rlm.lm.calls import LMUsage
from rlm.models.tasks import ErrorInfo, ExecuteResponse, Usage
from rlm.runtime.run import Run, TaskSpec
from rlm.tasks.event_store import EventWriter, stored_events
from rlm.tasks.events import (
    DEFAULT_MAX_EVENTS,
    DEFAULT_MAX_PROGRESS_EVENTS,
    TERMINAL_EVENT,
    EventLog,
    TaskEvent,
)
from rlm.tasks.idempotency import IdempotencyKey, IdempotentTask
from rlm.tasks.listing import TaskCursor, TaskQuery
from rlm.tasks.progress import plan_shape
from rlm.tasks.record import TaskRecord
from rlm.tasks.store import TaskStore

__all__ = ["TaskTable"]

log = logging.getLogger(__name__)

#: The states a task running here may be stored in while its live record says another.
_LIVE_STATES = frozenset({"pending", "running"})
#: A page of records (``TaskTable.list`` shadows the builtin inside the class).
_Records = list[TaskRecord]


class TaskTable:
    """The runs in flight and the task store behind them.

    Opening the table registers this engine instance in the store and marks the tasks of
    instances that are gone failed ("interrupted").

    Args:
        store: The task store.
        ray_address: The GCS address of the Ray cluster the engine runs in, recorded with the
            instance so later commands on the same state directory join it.
        max_events: The cap on each task's events (see :class:`~rlm.tasks.events.EventLog`).
        max_progress_events: The cap on each task's progress events, counted apart.
    """

    def __init__(
        self,
        store: TaskStore,
        ray_address: str | None = None,
        *,
        max_events: int = DEFAULT_MAX_EVENTS,
        max_progress_events: int = DEFAULT_MAX_PROGRESS_EVENTS,
    ) -> None:
        self._store = store
        self._max_events = max_events
        self._max_progress_events = max_progress_events
        self._writer = EventWriter(store.write_events)
        self._flush_timer: asyncio.TimerHandle | None = None
        self._instance_id = uuid.uuid4().hex
        self._store.register_instance(self._instance_id, ray_address)
        interrupted = self._store.recover_interrupted(self._instance_id)
        if interrupted:
            log.warning("marked %d interrupted task(s) failed", len(interrupted))
        #: The tasks marked interrupted when this table opened (their holds are to release).
        self.interrupted_at_start: list[str] = interrupted
        self._runs: dict[str, Run] = {}
        # Tasks whose "running" is stored (see publish_running): dropped when they end.
        self._published: set[str] = set()
        # Runs whose pending record is being written (see start), by task id and by key.
        self._starting: dict[str, Run] = {}
        self._starting_keys: dict[tuple[str, str], tuple[str, Run]] = {}
        self._seq = 0
        self._heartbeat: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._runs)

    def keep_alive(self, also: Callable[[], object] = lambda: None) -> None:
        """Start the heartbeat once (on the running loop): every 5 s the store hears that this
        instance is alive, so its running tasks are not taken for interrupted; ``also`` runs
        on each beat."""
        if self._heartbeat is None:
            self._heartbeat = asyncio.get_running_loop().create_task(self._beat(also))

    async def _beat(self, also: Callable[[], object]) -> None:
        while True:
            await asyncio.sleep(5.0)
            try:
                self._store.heartbeat(self._instance_id)
                also()
            except Exception:  # pragma: no cover - a locked file must not kill the loop
                log.exception("heartbeat failed")

    @property
    def instance_id(self) -> str:
        """This engine instance's id in the store (task records name it)."""
        return self._instance_id

    # -- other instances on a shared store -------------------------------------------------

    def recover_gone(self) -> list[str]:
        """Mark the unfinished tasks of instances that are gone failed ("interrupted"); a
        live instance calls this on its heartbeat when the store is shared."""
        marked = self._store.recover_interrupted(self._instance_id, own=False)
        if marked:
            log.warning("marked %d task(s) of a gone instance interrupted", len(marked))
        return marked

    def unfinished(self) -> set[str]:
        """Every pending or running task in the store, whichever instance runs it."""
        return self._store.unfinished()

    def forward_cancel(self, record: TaskRecord) -> None:
        """Ask the instance running ``record``'s task to cancel it."""
        self._store.request_cancel(record.task_id)

    def publish_running(self) -> int:
        """Store "running" for this instance's tasks that started since the last call; how many.

        On a shared store another instance answers a task's status from its stored record,
        which says "pending" until the task ends (the execute path writes no record when a
        task starts): the instance running it calls this on its poll, one statement for every
        task that started, so the others say "running" within a poll.
        """
        started = [
            (task_id, run.record.started_at)
            for task_id, run in self._runs.items()
            if run.record.status == "running" and task_id not in self._published
        ]
        if started:
            self._store.mark_running(started)
            self._published.update(task_id for task_id, _ in started)
        return len(started)

    def cancels_asked(self) -> list[str]:
        """This instance's tasks another instance was asked to cancel."""
        self._store.forget_cancels()
        return self._store.cancel_requests(self._instance_id)

    async def start(
        self,
        spec: TaskSpec,
        admission: Admission | None,
        key: IdempotencyKey | None = None,
        *,
        awaited: bool = False,
    ) -> Run | None:
        """Record a pending task and open its run; ``None`` when a task with its id runs or
        has a record (nothing is written then).

        With ``key``, the store records with it that the key names the task. The write is
        awaited (on PostgreSQL the loop serves other callers meanwhile): until it is done the
        run is *starting*, and a request with the same key finds it here (:meth:`idempotent`)
        instead of starting a second task.

        ``awaited``: the caller waits for the task's result (an ``execute``). Its pending
        record, when no key comes with it, is then not flushed to disk before the task
        runs (PostgreSQL's ``synchronous_commit = off``, 1 ms less per execute with a
        flushing server): nobody is told of the task before its final record, which is
        flushed, and that flush covers the earlier commit (the WAL is written in order). A
        crash of the engine still finds the record (it is committed on the server); only a
        crash of the database server in the moment after the start can lose it, with nothing
        said about it yet. A key is a promise to the caller's retries: with one, the record
        and key are flushed.
        """
        if spec.task_id in self._runs or spec.task_id in self._starting:
            return None
        record = TaskRecord(
            task_id=spec.task_id,
            status="pending",
            created_at=datetime.now(UTC),
            type=spec.type,
            description=spec.description,
            priority=spec.priority,
            owner_id=spec.owner_id,
            org_id=spec.org_id,
            team_id=spec.team_id,
            request=spec.request,
            planned_calls=spec.plan.agent_calls,
            instance_id=self._instance_id,
        )
        self._seq += 1
        run = Run(
            spec=spec,
            seq=self._seq,
            record=record,
            admission=admission,
            events=EventLog(
                spec.task_id,
                max_events=self._max_events,
                max_progress_events=self._max_progress_events,
                on_append=self._noted,
            ),
        )
        named = None if key is None else (key.owner, key.key)
        self._starting[spec.task_id] = run
        if named is not None and key is not None:
            self._starting_keys[named] = (key.fingerprint, run)
        try:
            fresh = await self._store.start_async(record, key, flush=not awaited or key is not None)
        finally:
            self._starting.pop(spec.task_id, None)
            if named is not None:
                self._starting_keys.pop(named, None)
        if not fresh:
            run.finished = True
            run.done.set()  # a request with its key waiting on it answers (it never ran)
            return None
        run.t0 = time.perf_counter()
        started = {
            "operation": spec.operation.name,
            "type": spec.type,
            "plannedCalls": spec.plan.agent_calls,
            "plan": plan_shape(spec.plan),
        }
        run.events.append("task.started", started)
        self._runs[spec.task_id] = run
        return run

    # -- events ------------------------------------------------------------------------------

    def _noted(self, events: EventLog) -> None:
        """An event was appended: write the batch now if it is due, else within 250 ms."""
        if self._writer.note(events):
            self.flush_events()
        elif self._flush_timer is None:
            loop = asyncio.get_running_loop()
            self._flush_timer = loop.call_later(self._writer.interval_s, self.flush_events)

    def flush_events(self) -> None:
        """Write the running tasks' new events to the store (one transaction)."""
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        try:
            self._writer.flush()
        except Exception:  # pragma: no cover - a locked file: they stay for the next batch
            log.exception("could not write task events")

    def stored_events(
        self, record: TaskRecord, after: int, limit: int | None, *, trajectory: bool = False
    ) -> tuple[list[TaskEvent], bool]:
        """An ended task's events above ``after`` from the store, and whether that is the end
        (see :func:`~rlm.tasks.event_store.stored_events`)."""
        return stored_events(self._store, record, after, limit, trajectory=trajectory)

    # -- idempotency keys ------------------------------------------------------------------

    def idempotent(self, key: IdempotencyKey) -> Run | TaskRecord | None:
        """The task ``key`` names (its run while in flight, else its record), or ``None``.

        Raises:
            InvalidInput: the key was used with a different body.
        """
        starting = self._starting_keys.get((key.owner, key.key))
        if starting is not None:
            fingerprint, run = starting
            IdempotentTask(run.spec.task_id, fingerprint, 0.0).check(key)
            return run
        named = self._store.idempotent(key.owner, key.key)
        if named is None:
            return None
        named.check(key)
        # A key whose task has no record cannot happen (both are written in one transaction)
        # unless the record was deleted; then the key names nothing any more.
        return self._runs.get(named.task_id) or self._store.get(named.task_id)

    def purge(self) -> int:
        """Forget idempotency keys past their time-to-live (on the heartbeat)."""
        return self._store.purge_idempotency()

    def run(self, task_id: str, viewer: Viewer | None) -> Run | None:
        """The task's run while it is in flight and ``viewer`` may see it."""
        run = self._runs.get(task_id)
        if run is None or not self.visible(run.record, viewer):
            return None
        return run

    def stored(self, task_id: str, viewer: Viewer | None) -> TaskRecord | None:
        """The task's stored record, if ``viewer`` may see it."""
        record = self._store.get(task_id)
        if record is None or not self.visible(record, viewer):
            return None
        return record

    def record(self, task_id: str, viewer: Viewer | None) -> TaskRecord | None:
        """The task's record (live while it runs), if ``viewer`` may see it."""
        record = self._record(task_id)
        if record is None or not self.visible(record, viewer):
            return None
        return record

    def list(self, viewer: Viewer | None, query: TaskQuery) -> tuple[_Records, TaskCursor | None]:
        """A page of the records ``viewer`` may see that ``query`` selects, newest first, live
        ones as they are now; and the cursor of the next page (``None``: this is the last).

        A task running here is stored "pending" until it ends (its live record says
        "running", without a write per start): a status filter naming either asks the store
        for both and keeps the tasks whose live status matches, reading on when that left
        the page short.
        """
        owner_id = None if viewer is None else viewer.user_id
        org_id = viewer.org_id if viewer is not None and viewer.admin else None
        stored = query
        if query.statuses & _LIVE_STATES:
            stored = query.evolve(statuses=query.statuses | _LIVE_STATES)
        wanted = query.limit + 1
        page: _Records = []
        after = query.after
        while len(page) < wanted:
            rows = self._store.find(stored.evolve(after=after), owner_id=owner_id, org_id=org_id)
            for row in rows:
                live = self._record(row.task_id) or row
                if not query.statuses or live.status in query.statuses:
                    page.append(live)
                    if len(page) == wanted:
                        break
            if len(rows) <= stored.limit:  # the store has no more
                break
            after = TaskCursor(rows[-1].created_at, rows[-1].task_id)
        if len(page) <= query.limit:
            return page, None
        page = page[: query.limit]
        return page, TaskCursor(page[-1].created_at, page[-1].task_id)

    def stored_bytes(self, team_id: str) -> int:
        """Bytes the store keeps for the team's tasks."""
        return self._store.stored_bytes(team_id=team_id)

    async def end(
        self,
        run: Run,
        status: str,
        *,
        output: Any = None,
        error: RLMError | None = None,
        task_score: float | None = None,
        usage: LMUsage | None = None,
    ) -> None:
        """Close the run: its result into its record, the record into the store.

        The write is awaited (on PostgreSQL the loop serves others meanwhile); until it is
        done the run stays in the table, so a status read sees its final record.
        """
        run.finished = True
        if run.timer is not None:
            run.timer.cancel()
        now = datetime.now(UTC)
        result = ExecuteResponse(
            task_id=run.spec.task_id,
            status=status,  # type: ignore[arg-type]
            output=output,
            execution_time_ms=round((time.perf_counter() - run.t0) * 1000.0, 3),
            agent_calls=run.completed,
            decomposition_depth=(
                (run.spec.plan.depth if run.depth_reached is None else run.depth_reached)
                if status == "completed"
                else 0
            ),
            success=status == "completed" and (task_score is None or task_score >= 1.0),
            score=task_score,
            error=None
            if error is None
            else ErrorInfo(code=error.code, message=error.message, details=error.details or None),
            usage=None if usage is None else Usage.model_validate(usage.to_wire()),
        )
        run.record = run.record.evolve(
            status=status,
            completed_at=now,
            started_at=run.record.started_at or now,
            completed_calls=run.completed,
            result=result,
        )
        # The last progress (calls finished since the previous one), then the terminal event;
        # both reach the store with the record, in one transaction.
        run.report_progress()
        # A session's batches still held for an earlier one that never came: in, in order.
        run.append_steps(run.event_batches.drain())
        run.events.append(TERMINAL_EVENT, {"status": status, "result": result.to_wire()})
        self._writer.forget(run.events)
        try:
            await self._store.put_async(run.record, run.events.unsaved())
            run.events.mark_saved()
        except Exception:  # pragma: no cover - the waiter still gets the result
            log.exception("could not persist the record of task %s", run.spec.task_id)
        self._runs.pop(run.spec.task_id, None)
        self._published.discard(run.spec.task_id)

    def _record(self, task_id: str) -> TaskRecord | None:
        run = self._runs.get(task_id)
        return run.record if run is not None else self._store.get(task_id)

    @staticmethod
    def visible(record: TaskRecord, viewer: Viewer | None) -> bool:
        """Whether ``viewer`` may see the task (``None``: a trusted caller sees all)."""
        return viewer is None or viewer.may_see(record.owner_id, record.org_id)
