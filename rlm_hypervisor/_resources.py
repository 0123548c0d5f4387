"""The client's namespaces (``client.tasks``, ``.quotas``, ``.storage``, ``.security``,
``.webhooks``).

Each method builds a :class:`~rlm_hypervisor._calls.Call` and hands it to the client, which
owns the connection, the retries and the error mapping; the async classes mirror the sync ones
method for method.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from rlm.models import (
    AllocationDecision,
    CancelResponse,
    Delivery,
    Organization,
    OrganizationHierarchy,
    QuotaConfig,
    SecurityContext,
    SecurityEvent,
    SecurityEventPage,
    SecurityPolicy,
    SecurityPolicyList,
    SecurityPolicyPatch,
    SecurityPolicyUpdate,
    SecurityValidateResponse,
    TaskEventMessage,
    TaskPage,
    TaskStatus,
    TeamMember,
    TeamQuotaStatus,
    Trajectory,
    UsageHistory,
    UserQuotaStatus,
    Webhook,
    WebhookCreated,
)
from rlm.models.tenants import OrgCreate, TeamCreate
from rlm.models.webhooks import SecretRotated
from rlm_hypervisor import _calls
from rlm_hypervisor._calls import AsyncSend, Send
from rlm_hypervisor._events import AsyncStream, Stream, astream_events, stream_events
from rlm_hypervisor.result import TERMINAL_STATES, ExecuteResult

__all__ = [
    "AsyncQuotasAPI",
    "AsyncSecurityAPI",
    "AsyncStorageAPI",
    "AsyncTasksAPI",
    "AsyncWebhooksAPI",
    "QuotasAPI",
    "SecurityAPI",
    "StorageAPI",
    "TasksAPI",
    "WebhooksAPI",
]


class _Unset:
    """The default of an argument that, left out, leaves a field unchanged."""

    def __repr__(self) -> str:
        return "UNSET"


_UNSET: Any = _Unset()


def _webhook_create(
    url: str, events: Sequence[str], description: str | None, scope: str
) -> dict[str, Any]:
    body: dict[str, Any] = {"url": url, "events": list(events), "scope": scope}
    if description is not None:
        body["description"] = description
    return body


def _webhook_patch(
    url: str | None, events: Sequence[str] | None, description: Any, enabled: bool | None
) -> dict[str, Any]:
    patch: dict[str, Any] = {}
    if url is not None:
        patch["url"] = url
    if events is not None:
        patch["events"] = list(events)
    if description is not _UNSET:
        patch["description"] = description
    if enabled is not None:
        patch["enabled"] = enabled
    return patch


def _usage_call(
    user_id: str | None, team_id: str | None, org_id: str | None, period: str, bucket: str
) -> _calls.Call[UsageHistory]:
    if sum(x is not None for x in (user_id, team_id, org_id)) > 1:
        raise ValueError("name one of user_id, team_id, org_id")
    if team_id is not None:
        return _calls.usage_history("team", team_id, period, bucket)
    if org_id is not None:
        return _calls.usage_history("org", org_id, period, bucket)
    return _calls.usage_history("user", user_id, period, bucket)


def _check_wait_args(timeout: float | None, poll_interval: float) -> None:
    if poll_interval <= 0:
        raise ValueError(f"poll_interval must be positive, got {poll_interval}")
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout must be non-negative, got {timeout}")


def _wait_timed_out(task_id: str, state: str, timeout: float | None) -> TimeoutError:
    return TimeoutError(
        f"task {task_id!r} is still {state} after {timeout} s; it keeps running on the server "
        "(wait again, or stop it with client.tasks.cancel)"
    )


class TasksAPI:
    """``client.tasks``: status, cancellation, waiting, listing, events and trajectories."""

    def __init__(
        self,
        send: Send,
        sleep: Callable[[float], None],
        clock: Callable[[], float],
        stream: Stream | None = None,
        max_retries: int = 3,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._send = send
        self._sleep = sleep
        self._clock = clock
        self._stream = stream
        self._max_retries = max_retries
        self._jitter = jitter

    def get(self, task_id: str) -> TaskStatus:
        """The task's current status (``GET /tasks/{taskId}``).

        Raises:
            TaskNotFound: no such task for this caller.
        """
        return self._send(_calls.get_task(task_id))

    def cancel(self, task_id: str) -> CancelResponse:
        """Ask the server to stop the task (``POST /tasks/{taskId}/cancel``).

        Returns:
            ``status`` is ``cancelled``, ``already_completed`` or ``not_found``.
        """
        return self._send(_calls.cancel_task(task_id))

    def wait(
        self, task_id: str, *, timeout: float | None = None, poll_interval: float = 0.2
    ) -> ExecuteResult:
        """Poll the task until it is completed, failed or cancelled.

        A failed task is returned, not raised: check ``success`` or call
        :meth:`ExecuteResult.raise_for_error`.

        Args:
            task_id: The task to wait for.
            timeout: Seconds to wait at most; ``None`` waits as long as the task runs.
            poll_interval: Seconds between polls.

        Raises:
            TimeoutError: the task was still running after ``timeout`` (it is not cancelled).
            TaskNotFound: no such task for this caller.
        """
        _check_wait_args(timeout, poll_interval)
        deadline = None if timeout is None else self._clock() + timeout
        while True:
            status = self.get(task_id)
            if status.status in TERMINAL_STATES:
                return ExecuteResult.from_status(status)
            pause = poll_interval
            if deadline is not None:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    raise _wait_timed_out(task_id, status.status, timeout)
                # One last poll right at the deadline rather than sleeping past it.
                pause = min(pause, remaining)
            self._sleep(pause)

    def list(
        self,
        limit: int = 50,
        *,
        status: str | Sequence[str] | None = None,
        type: str | None = None,
        operation: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[TaskStatus]:
        """The caller's most recent tasks (``GET /tasks``, an extension), newest first; an
        org admin's include its org's. The filters run on the server (see :meth:`list_page`).

        Example:
            >>> client.tasks.list(status=["running", "pending"], operation="sum")  # doctest: +SKIP
            [TaskStatus(task_id='...', status='running', ...)]
        """
        return self._send(_calls.list_tasks(limit, status, type, operation, since, until))

    def list_page(
        self,
        limit: int = 50,
        *,
        status: str | Sequence[str] | None = None,
        type: str | None = None,
        operation: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        cursor: str | None = None,
    ) -> TaskPage:
        """One page of the caller's tasks, newest first, and the cursor of the next.

        Args:
            limit: At most 500.
            status: One or more of pending, running, completed, failed, cancelled.
            type: recursive, parallel or sequential.
            operation: The operation the task's input named (``rlm`` for RLM tasks).
            since: Only tasks created at or after this (timezone-aware) time.
            until: Only tasks created before this (timezone-aware) time.
            cursor: The previous page's ``next_cursor`` (pass the same filters again).

        Raises:
            InvalidInput: a filter or the cursor is not valid.

        Example:
            >>> page = client.tasks.list_page(status="completed")  # doctest: +SKIP
            >>> while page.next_cursor:  # doctest: +SKIP
            ...     page = client.tasks.list_page(status="completed", cursor=page.next_cursor)
        """
        call = _calls.list_tasks_page(limit, status, type, operation, since, until, cursor)
        return self._send(call)

    def events(self, task_id: str, last_event_id: int | None = None) -> Iterator[TaskEventMessage]:
        """The task's events as they happen (``GET /tasks/{taskId}/events``, Server-Sent
        Events), ending after ``task.completed``, whose ``result`` is the task's result.

        A dropped connection is resumed after the last event received (``Last-Event-ID``),
        with the client's backoff; ``max_retries`` failures in a row give up.

        Args:
            task_id: The task.
            last_event_id: Resume after this event's ``id`` (``None``: from the first).

        Raises:
            TaskNotFound: no such task for this caller.
            httpx.TransportError: the connection kept failing.

        Example:
            >>> for event in client.tasks.events(task_id):  # doctest: +SKIP
            ...     if event.progress is not None:
            ...         print(f"{event.progress.percent} %")
            >>> event.result.output  # doctest: +SKIP
        """
        if self._stream is None:  # pragma: no cover - clients always pass one
            raise RuntimeError("this TasksAPI was built without a stream opener")
        return stream_events(
            self._stream, self._sleep, self._max_retries, task_id, last_event_id, self._jitter
        )

    def trajectory(self, task_id: str) -> Trajectory:
        """The task's trajectory (``GET /tasks/{taskId}/trajectory``): an RLM task's turns,
        code cells, sub-call batches and child RLMs, then ``task.completed`` once ended."""
        return self._send(_calls.task_trajectory(task_id))


class QuotasAPI:
    """``client.quotas``: user, team and organisation quotas."""

    def __init__(self, send: Send) -> None:
        self._send = send

    def get_status(self, user_id: str | None = None) -> UserQuotaStatus:
        """A user's daily, weekly and monthly windows (``GET /quotas/user/{userId}``).

        Args:
            user_id: The user; ``None`` means the API key's own user (``GET /quotas/user/me``,
                an alias the server resolves from the credentials).
        """
        return self._send(_calls.user_quota(user_id))

    def check(
        self, user_id: str, agents_requested: int, session_id: str | None = None
    ) -> AllocationDecision:
        """Whether ``agents_requested`` more agents would be admitted now (a dry run)."""
        return self._send(_calls.check_allocation(user_id, agents_requested, session_id))

    def team(self, team_id: str) -> TeamQuotaStatus:
        """A team's pool, usage, members and projects (``GET /quotas/team/{teamId}``)."""
        return self._send(_calls.team_quota(team_id))

    def usage(
        self,
        user_id: str | None = None,
        *,
        team_id: str | None = None,
        org_id: str | None = None,
        period: str = "daily",
        bucket: str = "hour",
    ) -> UsageHistory:
        """Usage over time in the current ``period`` window (``daily``, ``weekly``,
        ``monthly``), per ``bucket`` (``hour``, ``day``): a user's (``None``: the key's own),
        or with ``team_id`` a team's, or with ``org_id`` an org's (managers).

        Example:
            >>> day = client.quotas.usage(period="daily", bucket="hour")  # doctest: +SKIP
            >>> [b.agents_used for b in day.buckets]                      # doctest: +SKIP
        """
        return self._send(_usage_call(user_id, team_id, org_id, period, bucket))

    def transfer(
        self,
        team_id: str,
        from_user_id: str,
        to_user_id: str,
        agents: int = 0,
        compute_hours: float = 0.0,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Move part of one member's allocation to another (``POST .../transfers``).

        Args:
            team_id: The team.
            from_user_id: The member giving.
            to_user_id: The member receiving.
            agents: Agents to move.
            compute_hours: Compute hours to move.
            idempotency_key: Sent as ``Idempotency-Key``; one is generated when ``None``, so
                retries of this call cannot transfer twice. Pass your own to make *your*
                retries (of the whole method) safe too.

        Returns:
            The server's JSON answer.
        """
        return self._send(
            _calls.transfer(
                team_id, from_user_id, to_user_id, agents, compute_hours, idempotency_key
            )
        )

    def org_hierarchy(self, org_id: str) -> OrganizationHierarchy:
        """An organisation with its ancestors (root first), descendants and siblings."""
        return self._send(_calls.org_hierarchy(org_id))

    def update_org(
        self,
        org_id: str,
        agents: int | None = None,
        compute_hours: float | None = None,
        storage_gb: float | None = None,
    ) -> dict[str, Any]:
        """Set an organisation's limits (``PATCH``); limits left ``None`` are not changed.

        Returns:
            The server's JSON answer.
        """
        return self._send(_calls.update_org(org_id, agents, compute_hours, storage_gb))

    def set_config(self, config: QuotaConfig | Mapping[str, Any]) -> QuotaConfig:
        """Set a user's limits (``PUT /quotas/user/{userId}``, ``rlm:quota:manage``).

        A user in no org yet joins the manager's org; others must be in an org it manages.
        """
        return self._send(_calls.set_user_config(config))

    def create_team(self, team: TeamCreate | Mapping[str, Any]) -> TeamQuotaStatus:
        """Create a team with its monthly pool (``POST /quotas/team``), in ``orgId`` or the
        caller's org."""
        return self._send(_calls.create_team(team))

    def set_member(
        self,
        team_id: str,
        user_id: str,
        *,
        role: str = "member",
        agents_allocated: int | None = None,
        compute_hours_allocated: float | None = None,
    ) -> TeamMember:
        """Add a member (or change its role) and, when given, set its share of the pool; all
        or nothing (``PUT /quotas/team/{teamId}/members/{userId}``)."""
        return self._send(
            _calls.set_member(team_id, user_id, role, agents_allocated, compute_hours_allocated)
        )

    def set_project(
        self,
        team_id: str,
        project_id: str,
        agents_allocated: int,
        compute_hours_allocated: float = 0.0,
        name: str = "",
    ) -> TeamQuotaStatus:
        """Set a project's share of a team pool (``PUT .../projects/{projectId}``)."""
        return self._send(
            _calls.set_project(team_id, project_id, agents_allocated, compute_hours_allocated, name)
        )

    def create_org(self, org: OrgCreate | Mapping[str, Any]) -> Organization:
        """Create an organisation under ``parentId`` (``POST /quotas/enterprise/org``)."""
        return self._send(_calls.create_org(org))


class StorageAPI:
    """``client.storage``: byte-range reads."""

    def __init__(self, send: Send) -> None:
        self._send = send

    def read(self, connector: str, key: str, start: int, end: int, method: str = "auto") -> bytes:
        """Bytes ``start`` (inclusive) to ``end`` (exclusive) of an object.

        Args:
            connector: ``local``, ``s3``, ``gcs``...
            key: The object's key.
            start: The first byte.
            end: One past the last byte; fewer bytes come back at the end of the object.
            method: ``auto``, ``mmap``, ``direct``, ``async`` or ``standard``.
        """
        return self._send(_calls.storage_read(connector, key, start, end, method))


class SecurityAPI:
    """``client.security``: input validation and the audit log."""

    def __init__(self, send: Send) -> None:
        self._send = send

    def validate(
        self, input: str, context: dict[str, Any] | SecurityContext | None = None
    ) -> SecurityValidateResponse:
        """Check ``input`` against the security policies (``POST /security/validate``).

        Args:
            input: The text to check.
            context: ``{"userId", "action", "resource"}`` (any subset).
        """
        return self._send(_calls.validate_input(input, context))

    def events(self, severity: str | None = None, limit: int = 100) -> list[SecurityEvent]:
        """Recent audit-log entries (``GET /security/events``), optionally of one severity."""
        return self._send(_calls.security_events(severity, limit))

    def events_page(
        self,
        severity: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        since: datetime | None = None,
        type: str | None = None,
    ) -> SecurityEventPage:
        """One page of the org's audit log, newest first (``rlm:admin``).

        Args:
            severity: One or more (comma-separated) of info, low, medium, high, critical.
            limit: At most 1000.
            cursor: The previous page's ``next_cursor``.
            since: Only events at or after this (timezone-aware) time.
            type: One or more (comma-separated) event types, e.g. ``auth.forbidden``.
        """
        return self._send(_calls.security_events_page(severity, limit, cursor, since, type))

    def policies(self) -> SecurityPolicyList:
        """The org's policies in force (``GET /security/policies``, ``rlm:admin``)."""
        return self._send(_calls.security_policies())

    def put_policy(
        self, policy_id: str, policy: SecurityPolicyUpdate | dict[str, Any]
    ) -> SecurityPolicy:
        """Replace a policy of the org: ``enabled``, ``priority``, ``name``, ``settings``."""
        return self._send(_calls.put_security_policy(policy_id, policy))

    def patch_policy(
        self, policy_id: str, changes: SecurityPolicyPatch | dict[str, Any]
    ) -> SecurityPolicy:
        """Change some fields of a policy of the org (settings keys are merged)."""
        return self._send(_calls.patch_security_policy(policy_id, changes))


class WebhooksAPI:
    """``client.webhooks``: register endpoints for events, rotate secrets, read and retry
    deliveries (extensions of the API document; verify what arrives with
    :func:`rlm_hypervisor.webhooks.verify`)."""

    def __init__(self, send: Send) -> None:
        self._send = send

    def create(
        self,
        url: str,
        events: Sequence[str] = ("task.completed",),
        *,
        description: str | None = None,
        scope: str = "user",
    ) -> WebhookCreated:
        """Register an endpoint (``POST /webhooks``).

        Args:
            url: An ``https`` URL the service may reach (no private addresses).
            events: ``task.completed`` and/or ``quota.threshold_exceeded``.
            description: A note for people.
            scope: ``user`` (your own events) or ``org`` (every member's; ``rlm:admin``).

        Returns:
            The webhook and its signing ``secret``: keep it, it is shown only this once.
        """
        return self._send(_calls.create_webhook(_webhook_create(url, events, description, scope)))

    def get(self, webhook_id: str) -> Webhook:
        """One webhook (``GET /webhooks/{webhookId}``).

        Raises:
            WebhookNotFound: no such webhook for this caller.
        """
        return self._send(_calls.get_webhook(webhook_id))

    def update(
        self,
        webhook_id: str,
        *,
        url: str | None = None,
        events: Sequence[str] | None = None,
        description: str | None = _UNSET,
        enabled: bool | None = None,
    ) -> Webhook:
        """Change the fields given (``PATCH``); ``enabled=True`` re-enables a disabled one,
        ``description=None`` clears the description."""
        patch = _webhook_patch(url, events, description, enabled)
        return self._send(_calls.update_webhook(webhook_id, patch))

    def delete(self, webhook_id: str) -> None:
        """Remove a webhook and its deliveries."""
        self._send(_calls.delete_webhook(webhook_id))

    def rotate_secret(self, webhook_id: str, grace_seconds: int | None = None) -> SecretRotated:
        """A new secret signs from now on; the old one too for ``grace_seconds`` (default: the
        service's, a day)."""
        return self._send(_calls.rotate_webhook_secret(webhook_id, grace_seconds))

    def test(self, webhook_id: str) -> Delivery:
        """Send a ``webhook.test`` ping; answers once its first attempt has ended."""
        return self._send(_calls.ping_webhook(webhook_id))

    def deliveries(
        self, webhook_id: str, *, status: str | None = None, limit: int = 50
    ) -> list[Delivery]:
        """The webhook's deliveries, newest first, each with its attempts."""
        return self._send(_calls.list_deliveries(webhook_id, status, limit))

    def delivery(self, webhook_id: str, delivery_id: str) -> Delivery:
        """One delivery and its attempts."""
        return self._send(_calls.get_delivery(webhook_id, delivery_id))

    def retry(self, webhook_id: str, delivery_id: str) -> Delivery:
        """Send a delivery again now, under the same ``webhook-id``."""
        return self._send(_calls.retry_delivery(webhook_id, delivery_id))

    # Last: a method named ``list`` would shadow the builtin in the annotations after it.
    def list(self) -> list[Webhook]:
        """Your webhooks (an admin's org's too)."""
        return self._send(_calls.list_webhooks())


class AsyncTasksAPI:
    """``client.tasks`` of :class:`AsyncRLMClient`; see :class:`TasksAPI`."""

    def __init__(
        self,
        send: AsyncSend,
        sleep: Callable[[float], Awaitable[None]],
        clock: Callable[[], float],
        stream: AsyncStream | None = None,
        max_retries: int = 3,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._send = send
        self._sleep = sleep
        self._clock = clock
        self._stream = stream
        self._max_retries = max_retries
        self._jitter = jitter

    async def get(self, task_id: str) -> TaskStatus:
        """See :meth:`TasksAPI.get`."""
        return await self._send(_calls.get_task(task_id))

    async def cancel(self, task_id: str) -> CancelResponse:
        """See :meth:`TasksAPI.cancel`."""
        return await self._send(_calls.cancel_task(task_id))

    async def wait(
        self, task_id: str, *, timeout: float | None = None, poll_interval: float = 0.2
    ) -> ExecuteResult:
        """See :meth:`TasksAPI.wait`.

        Raises:
            TimeoutError: the task was still running after ``timeout`` (it is not cancelled).
        """
        _check_wait_args(timeout, poll_interval)
        deadline = None if timeout is None else self._clock() + timeout
        while True:
            status = await self.get(task_id)
            if status.status in TERMINAL_STATES:
                return ExecuteResult.from_status(status)
            pause = poll_interval
            if deadline is not None:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    raise _wait_timed_out(task_id, status.status, timeout)
                pause = min(pause, remaining)
            await self._sleep(pause)

    async def list(
        self,
        limit: int = 50,
        *,
        status: str | Sequence[str] | None = None,
        type: str | None = None,
        operation: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[TaskStatus]:
        """See :meth:`TasksAPI.list`."""
        return await self._send(_calls.list_tasks(limit, status, type, operation, since, until))

    async def list_page(
        self,
        limit: int = 50,
        *,
        status: str | Sequence[str] | None = None,
        type: str | None = None,
        operation: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        cursor: str | None = None,
    ) -> TaskPage:
        """See :meth:`TasksAPI.list_page`."""
        call = _calls.list_tasks_page(limit, status, type, operation, since, until, cursor)
        return await self._send(call)

    def events(
        self, task_id: str, last_event_id: int | None = None
    ) -> AsyncIterator[TaskEventMessage]:
        """See :meth:`TasksAPI.events`: an async iterator (``async for event in ...``)."""
        if self._stream is None:  # pragma: no cover - clients always pass one
            raise RuntimeError("this AsyncTasksAPI was built without a stream opener")
        return astream_events(
            self._stream, self._sleep, self._max_retries, task_id, last_event_id, self._jitter
        )

    async def trajectory(self, task_id: str) -> Trajectory:
        """See :meth:`TasksAPI.trajectory`."""
        return await self._send(_calls.task_trajectory(task_id))


class AsyncQuotasAPI:
    """``client.quotas`` of :class:`AsyncRLMClient`; see :class:`QuotasAPI`."""

    def __init__(self, send: AsyncSend) -> None:
        self._send = send

    async def get_status(self, user_id: str | None = None) -> UserQuotaStatus:
        """See :meth:`QuotasAPI.get_status` (``None``: the key's own user, via ``me``)."""
        return await self._send(_calls.user_quota(user_id))

    async def check(
        self, user_id: str, agents_requested: int, session_id: str | None = None
    ) -> AllocationDecision:
        """See :meth:`QuotasAPI.check`."""
        return await self._send(_calls.check_allocation(user_id, agents_requested, session_id))

    async def team(self, team_id: str) -> TeamQuotaStatus:
        """See :meth:`QuotasAPI.team`."""
        return await self._send(_calls.team_quota(team_id))

    async def usage(
        self,
        user_id: str | None = None,
        *,
        team_id: str | None = None,
        org_id: str | None = None,
        period: str = "daily",
        bucket: str = "hour",
    ) -> UsageHistory:
        """See :meth:`QuotasAPI.usage`."""
        return await self._send(_usage_call(user_id, team_id, org_id, period, bucket))

    async def transfer(
        self,
        team_id: str,
        from_user_id: str,
        to_user_id: str,
        agents: int = 0,
        compute_hours: float = 0.0,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """See :meth:`QuotasAPI.transfer`."""
        return await self._send(
            _calls.transfer(
                team_id, from_user_id, to_user_id, agents, compute_hours, idempotency_key
            )
        )

    async def org_hierarchy(self, org_id: str) -> OrganizationHierarchy:
        """See :meth:`QuotasAPI.org_hierarchy`."""
        return await self._send(_calls.org_hierarchy(org_id))

    async def update_org(
        self,
        org_id: str,
        agents: int | None = None,
        compute_hours: float | None = None,
        storage_gb: float | None = None,
    ) -> dict[str, Any]:
        """See :meth:`QuotasAPI.update_org`."""
        return await self._send(_calls.update_org(org_id, agents, compute_hours, storage_gb))

    async def set_config(self, config: QuotaConfig | Mapping[str, Any]) -> QuotaConfig:
        """See :meth:`QuotasAPI.set_config`."""
        return await self._send(_calls.set_user_config(config))

    async def create_team(self, team: TeamCreate | Mapping[str, Any]) -> TeamQuotaStatus:
        """See :meth:`QuotasAPI.create_team`."""
        return await self._send(_calls.create_team(team))

    async def set_member(
        self,
        team_id: str,
        user_id: str,
        *,
        role: str = "member",
        agents_allocated: int | None = None,
        compute_hours_allocated: float | None = None,
    ) -> TeamMember:
        """See :meth:`QuotasAPI.set_member`."""
        return await self._send(
            _calls.set_member(team_id, user_id, role, agents_allocated, compute_hours_allocated)
        )

    async def set_project(
        self,
        team_id: str,
        project_id: str,
        agents_allocated: int,
        compute_hours_allocated: float = 0.0,
        name: str = "",
    ) -> TeamQuotaStatus:
        """See :meth:`QuotasAPI.set_project`."""
        return await self._send(
            _calls.set_project(team_id, project_id, agents_allocated, compute_hours_allocated, name)
        )

    async def create_org(self, org: OrgCreate | Mapping[str, Any]) -> Organization:
        """See :meth:`QuotasAPI.create_org`."""
        return await self._send(_calls.create_org(org))


class AsyncStorageAPI:
    """``client.storage`` of :class:`AsyncRLMClient`; see :class:`StorageAPI`."""

    def __init__(self, send: AsyncSend) -> None:
        self._send = send

    async def read(
        self, connector: str, key: str, start: int, end: int, method: str = "auto"
    ) -> bytes:
        """See :meth:`StorageAPI.read`."""
        return await self._send(_calls.storage_read(connector, key, start, end, method))


class AsyncSecurityAPI:
    """``client.security`` of :class:`AsyncRLMClient`; see :class:`SecurityAPI`."""

    def __init__(self, send: AsyncSend) -> None:
        self._send = send

    async def validate(
        self, input: str, context: dict[str, Any] | SecurityContext | None = None
    ) -> SecurityValidateResponse:
        """See :meth:`SecurityAPI.validate`."""
        return await self._send(_calls.validate_input(input, context))

    async def events(self, severity: str | None = None, limit: int = 100) -> list[SecurityEvent]:
        """See :meth:`SecurityAPI.events`."""
        return await self._send(_calls.security_events(severity, limit))

    async def events_page(
        self,
        severity: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        since: datetime | None = None,
        type: str | None = None,
    ) -> SecurityEventPage:
        """See :meth:`SecurityAPI.events_page`."""
        return await self._send(_calls.security_events_page(severity, limit, cursor, since, type))

    async def policies(self) -> SecurityPolicyList:
        """See :meth:`SecurityAPI.policies`."""
        return await self._send(_calls.security_policies())

    async def put_policy(
        self, policy_id: str, policy: SecurityPolicyUpdate | dict[str, Any]
    ) -> SecurityPolicy:
        """See :meth:`SecurityAPI.put_policy`."""
        return await self._send(_calls.put_security_policy(policy_id, policy))

    async def patch_policy(
        self, policy_id: str, changes: SecurityPolicyPatch | dict[str, Any]
    ) -> SecurityPolicy:
        """See :meth:`SecurityAPI.patch_policy`."""
        return await self._send(_calls.patch_security_policy(policy_id, changes))


class AsyncWebhooksAPI:
    """``client.webhooks`` of :class:`AsyncRLMClient`; see :class:`WebhooksAPI`."""

    def __init__(self, send: AsyncSend) -> None:
        self._send = send

    async def create(
        self,
        url: str,
        events: Sequence[str] = ("task.completed",),
        *,
        description: str | None = None,
        scope: str = "user",
    ) -> WebhookCreated:
        """See :meth:`WebhooksAPI.create`."""
        body = _webhook_create(url, events, description, scope)
        return await self._send(_calls.create_webhook(body))

    async def get(self, webhook_id: str) -> Webhook:
        """See :meth:`WebhooksAPI.get`."""
        return await self._send(_calls.get_webhook(webhook_id))

    async def update(
        self,
        webhook_id: str,
        *,
        url: str | None = None,
        events: Sequence[str] | None = None,
        description: str | None = _UNSET,
        enabled: bool | None = None,
    ) -> Webhook:
        """See :meth:`WebhooksAPI.update`."""
        patch = _webhook_patch(url, events, description, enabled)
        return await self._send(_calls.update_webhook(webhook_id, patch))

    async def delete(self, webhook_id: str) -> None:
        """See :meth:`WebhooksAPI.delete`."""
        await self._send(_calls.delete_webhook(webhook_id))

    async def rotate_secret(
        self, webhook_id: str, grace_seconds: int | None = None
    ) -> SecretRotated:
        """See :meth:`WebhooksAPI.rotate_secret`."""
        return await self._send(_calls.rotate_webhook_secret(webhook_id, grace_seconds))

    async def test(self, webhook_id: str) -> Delivery:
        """See :meth:`WebhooksAPI.test`."""
        return await self._send(_calls.ping_webhook(webhook_id))

    async def deliveries(
        self, webhook_id: str, *, status: str | None = None, limit: int = 50
    ) -> list[Delivery]:
        """See :meth:`WebhooksAPI.deliveries`."""
        return await self._send(_calls.list_deliveries(webhook_id, status, limit))

    async def delivery(self, webhook_id: str, delivery_id: str) -> Delivery:
        """See :meth:`WebhooksAPI.delivery`."""
        return await self._send(_calls.get_delivery(webhook_id, delivery_id))

    async def retry(self, webhook_id: str, delivery_id: str) -> Delivery:
        """See :meth:`WebhooksAPI.retry`."""
        return await self._send(_calls.retry_delivery(webhook_id, delivery_id))

    async def list(self) -> list[Webhook]:
        """See :meth:`WebhooksAPI.list`."""
        return await self._send(_calls.list_webhooks())
