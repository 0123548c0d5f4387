"""Which tasks a list shows: filters, the viewer's reach, and the cursor to the next page.

A :class:`TaskQuery` is built by the API from ``GET /tasks``'s query parameters and run by the
task store as one ``SELECT`` (:func:`where`), newest first. Pages are cut by *keyset*: the
order is ``(created_at, task_id)`` descending, and a :class:`TaskCursor` names the last task
of a page, so the next page starts right after it whatever was created meanwhile (no offset
that shifts, no row shown twice).

On the wire a cursor is ``<microseconds since the epoch>-<task id>`` (the page's last task):
every string its documented pattern accepts names a position, and nothing else is accepted
(``INVALID_INPUT``), so a client or a fuzzer sending any schema-valid cursor gets a page. A
cursor is a position, never a permission: the viewer's reach is applied to every page.

Example:
    >>> q = TaskQuery(statuses=frozenset({"running"}), limit=2)
    >>> sql, args = where(q, owner_id="ada", org_id=None, on_postgres=False)
    >>> sql
    'WHERE owner_id = ? AND status IN (?) ORDER BY created_at DESC, task_id DESC LIMIT ?'
    >>> args
    ['ada', 'running', 3]
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

from rlm.errors import InvalidInput
from rlm.models.tasks import TaskState, TaskType

__all__ = [
    "CURSOR_PATTERN",
    "MAX_PAGE",
    "TASK_STATES",
    "TASK_TYPES",
    "TaskCursor",
    "TaskQuery",
    "timestamp",
    "where",
]

#: The most tasks one page holds.
MAX_PAGE = 500
#: What a cursor looks like on the wire: ``<microseconds since the epoch>-<task id>``.
CURSOR_PATTERN = r"^[0-9]{1,17}-[A-Za-z0-9_.-]{1,200}$"
_CURSOR = re.compile(CURSOR_PATTERN, re.ASCII)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
TASK_STATES: tuple[str, ...] = get_args(TaskState)
TASK_TYPES: tuple[str, ...] = get_args(TaskType)


def timestamp(dt: datetime) -> str:
    """How the store writes an instant (UTC, ISO 8601): bounds are compared in this form,
    so an instant equal to a stored ``created_at`` compares equal."""
    return dt.astimezone(UTC).isoformat()


@dataclass(frozen=True, slots=True)
class TaskCursor:
    """The last task of a page: the next page starts after it.

    Attributes:
        created_at: The task's creation time.
        task_id: Its id (breaks ties between tasks created at the same instant).
    """

    created_at: datetime
    task_id: str

    def encode(self) -> str:
        """The cursor as the API hands it out (exact to the microsecond, as stored)."""
        micros = (self.created_at.astimezone(UTC) - _EPOCH) // _MICROSECOND
        return f"{micros}-{self.task_id}"

    @classmethod
    def decode(cls, text: str) -> TaskCursor:
        """The position ``text`` names.

        Raises:
            InvalidInput: ``text`` does not have a cursor's form.
        """
        if _CURSOR.fullmatch(text) is None:
            raise InvalidInput(
                "cursor: not a nextCursor this API returned (<microseconds>-<taskId>)",
                field="cursor",
            )
        micros, task_id = text.split("-", 1)
        return cls(_EPOCH + int(micros) * _MICROSECOND, task_id)


@dataclass(frozen=True, slots=True)
class TaskQuery:
    """What a task list shows (every filter optional; together they all apply).

    Attributes:
        statuses: Only tasks in one of these states (empty: any).
        type: Only tasks of this type (recursive, parallel, sequential).
        operation: Only tasks whose input named this operation (``rlm`` for RLM tasks).
        since: Only tasks created at or after this instant.
        until: Only tasks created before this instant (not after ``since``: no task).
        after: Only tasks after this cursor (the previous page's last).
        limit: At most this many tasks.
    """

    statuses: frozenset[str] = field(default_factory=frozenset)
    type: str | None = None
    operation: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    after: TaskCursor | None = None
    limit: int = 50

    def __post_init__(self) -> None:
        unknown = sorted(set(self.statuses) - set(TASK_STATES))
        if unknown:
            raise InvalidInput(
                f"status: {', '.join(unknown)} is not one of {', '.join(TASK_STATES)}",
                field="status",
            )
        if self.type is not None and self.type not in TASK_TYPES:
            raise InvalidInput(
                f"type: {self.type!r} is not one of {', '.join(TASK_TYPES)}", field="type"
            )
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise InvalidInput(f"{name} must carry its UTC offset", field=name)
        if not 1 <= self.limit <= MAX_PAGE:
            raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}", field="limit")

    def evolve(self, **changes: Any) -> TaskQuery:
        """A copy with ``changes`` applied."""
        return replace(self, **changes)


def where(
    query: TaskQuery,
    *,
    owner_id: str | None,
    org_id: str | None,
    on_postgres: bool,
    extra: int = 1,
) -> tuple[str, list[Any]]:
    """The ``WHERE ... ORDER BY ... LIMIT ?`` of ``query`` and its arguments.

    Args:
        query: The filters and page.
        owner_id: Only this user's tasks (with ``org_id``: this user's or this org's).
        org_id: Only this org's tasks (with ``owner_id``: see above).
        on_postgres: Which SQL dialect reads the operation out of the stored request.
        extra: Rows fetched beyond ``query.limit`` (one tells whether a next page exists).
    """
    clauses: list[str] = []
    args: list[Any] = []
    if owner_id is not None and org_id is not None:
        clauses.append("(owner_id = ? OR org_id = ?)")
        args += [owner_id, org_id]
    elif owner_id is not None:
        clauses.append("owner_id = ?")
        args.append(owner_id)
    elif org_id is not None:
        clauses.append("org_id = ?")
        args.append(org_id)
    if query.statuses:
        clauses.append(f"status IN ({', '.join('?' for _ in query.statuses)})")
        args += sorted(query.statuses)
    if query.type is not None:
        clauses.append("type = ?")
        args.append(query.type)
    if query.operation is not None:
        # The stored request keeps a summary of the input (never its items), so reading one
        # field out of it is cheap; the other filters narrow the rows first.
        operation = (
            "(request_json::jsonb #>> '{input,operation}')"
            if on_postgres
            else "json_extract(request_json, '$.input.operation')"
        )
        clauses.append(f"{operation} = ?")
        args.append(query.operation)
    if query.since is not None:
        clauses.append("created_at >= ?")
        args.append(timestamp(query.since))
    if query.until is not None:
        clauses.append("created_at < ?")
        args.append(timestamp(query.until))
    if query.after is not None:
        at = timestamp(query.after.created_at)
        clauses.append("(created_at < ? OR (created_at = ? AND task_id < ?))")
        args += [at, at, query.after.task_id]
    sql = ("WHERE " + " AND ".join(clauses) + " ") if clauses else ""
    sql += "ORDER BY created_at DESC, task_id DESC LIMIT ?"
    args.append(query.limit + extra)
    return sql, args
