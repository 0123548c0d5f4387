"""The HTTP side of security: the backend seam, each org's policies cached, and recording.

``app.state.security`` is a :class:`Security`: it records events (buffered, off the request's
hot path), hands out an org's :class:`~rlm.security.policies.PolicySet` (cached for
``policy_cache_s``: a change through this replica is seen at once, through another within
that time), and validates a task's input before it runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Protocol

from rlm.auth.principal import Principal
from rlm.models.security import Severity
from rlm.models.tasks import ExecuteRequest
from rlm.security.buffer import EventBuffer
from rlm.security.events import SecurityEventIn, install_sink, record_violations
from rlm.security.policies import PolicySet
from rlm.security.service import SecurityService
from rlm.security.source_scan import scan_source
from rlm.security.validator import InputValidator, ValidationResult
from rlm.storage.service import StorageService

__all__ = ["LocalSecurity", "Security", "SecurityBackend"]

#: Inputs larger than this (by the request's Content-Length) are validated in a thread.
_INLINE_BYTES = 64 * 1024


class SecurityBackend(Protocol):
    """Where policies and the audit log live (the security actor, or an in-process service)."""

    def emit(self, event: SecurityEventIn) -> None:
        """Record an event without waiting."""
        ...

    async def flush(self) -> None:
        """Wait until the events this process recorded are written."""
        ...

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call a :class:`~rlm.security.service.SecurityService` method."""
        ...


class LocalSecurity:
    """The security service in this process (the app without Ray, and tests).

    Args:
        state_dir: Where ``security.db`` (and the audit key) live.
        database_url: Keep the log and policies in this PostgreSQL database instead.
    """

    def __init__(self, state_dir: Any, database_url: str | None = None) -> None:
        self._service = SecurityService(state_dir, database_url=database_url)
        self.buffer = EventBuffer(self._service.record)

    def emit(self, event: SecurityEventIn) -> None:
        """Record an event (buffered)."""
        self.buffer.emit(event)

    async def flush(self) -> None:
        """Write what is waiting."""
        await asyncio.to_thread(self.buffer.flush)

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call the service in a thread (SQLite stays off the event loop)."""
        return await asyncio.to_thread(getattr(self._service, method), *args, **kwargs)


class Security:
    """What the routes use: recording, policies, input validation.

    Args:
        backend: The security actor (``hv.security()``) or a :class:`LocalSecurity`.
        policy_cache_s: How long an org's policies are reused before being read again.
    """

    def __init__(self, backend: SecurityBackend, *, policy_cache_s: float = 2.0) -> None:
        self.backend = backend
        self._ttl = policy_cache_s
        self._cache: dict[str | None, tuple[float, PolicySet]] = {}
        # ``record_security_event`` anywhere in this process goes to the same buffer.
        sink = getattr(backend, "buffer", None)
        if sink is not None:
            install_sink(sink)

    # -- recording ----------------------------------------------------------------------------

    def record(
        self,
        type_: str,
        *,
        message: str,
        severity: Severity | None = None,
        org_id: str | None = None,
        user_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Record an event (returns at once)."""
        self.backend.emit(
            SecurityEventIn.of(
                type_,
                message=message,
                severity=severity,
                org_id=org_id,
                user_id=user_id,
                details=details,
            )
        )

    def record_validation(
        self,
        result: ValidationResult,
        policies: PolicySet,
        principal: Principal,
        *,
        source: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Record the violations of one validation, as the org's ``audit-log`` says."""
        if not result.violations:
            return
        audit = policies.settings("audit-log")
        if source == "validate" and not audit.record_validate:
            return
        record_violations(
            result.violations,
            source=source,
            org_id=principal.org,
            user_id=None if principal.is_anonymous else principal.user_id,
            refused=not result.allowed,
            min_severity=audit.min_severity,
            details=details,
            sink=self.backend,
        )

    # -- policies -----------------------------------------------------------------------------

    async def policies(self, org_id: str | None) -> PolicySet:
        """The org's policies in force (cached)."""
        now = time.monotonic()
        hit = self._cache.get(org_id)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        changed = await self.backend.call("changed_policies", org_id) if org_id else {}
        found = PolicySet(changed)
        self._cache[org_id] = (now, found)
        return found

    def forget(self, org_id: str | None) -> None:
        """Drop the org's cached policies (after a change)."""
        self._cache.pop(org_id, None)

    # -- a task's input -----------------------------------------------------------------------

    async def check_execute(
        self, body: ExecuteRequest, principal: Principal, *, size_hint: int = 0
    ) -> PolicySet:
        """Validate a task's description, text and prompts before it runs; record what was
        found. A ``critical`` violation refuses the task.

        Returns:
            The org's policies it was checked with (for :meth:`check_source`).

        Raises:
            InvalidInput: refused, with the violations in ``details``.
        """
        policies = await self.policies(principal.org)
        validator = InputValidator(policies)
        args = (body.description, body.input, body.expected_output)
        if size_hint > _INLINE_BYTES:
            result = await asyncio.to_thread(validator.check_request, *args)
        else:
            result = validator.check_request(*args)
        self.record_validation(result, policies, principal, source="execute")
        result.raise_if_refused("the task")
        return policies

    def check_source(
        self,
        items: Any,
        storage: Callable[[], StorageService],
        policies: PolicySet,
        principal: Principal,
        *,
        task_id: str,
    ) -> None:
        """Validate the text of a task's storage source, as its agents will read it, before
        the task is admitted (blocking: call it off the event loop, where the task is
        prepared). Lower violations are recorded (source ``storage``); a ``critical`` one
        refuses the task. Inline items and numbers (``int64``, ``float64``): nothing to do.

        Args:
            items: The prepared task's items (``TaskSpec.items``): ``("source", spec, ranges,
                ...)`` for a file in storage.
            storage: The storage service the agents read through (asked for only when
                there is a source).
            policies: The org's policies (as :meth:`check_execute` answered).
            principal: Who runs the task.
            task_id: The task's id, named in the recorded event when it runs.

        Raises:
            InvalidInput: refused, with the violations in ``details``.
        """
        if not (isinstance(items, tuple) and len(items) >= 3 and items[0] == "source"):
            return  # inline items (checked by check_execute), or an RLM's context file
        source, ranges = items[1], items[2]
        result = scan_source(InputValidator(policies), storage(), source, ranges)
        if result is None:
            return
        details = {"taskId": task_id} if result.allowed else None  # a refused task never exists
        self.record_validation(result, policies, principal, source="storage", details=details)
        result.raise_if_refused("the task's source")
