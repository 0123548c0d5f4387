"""The security actor: one per state directory, the audit log's only writer.

Why an actor of its own (not the core, not each replica): the hash chain needs one writer to
stay linear, and SQLite commits (an fsync each) must not stall the core's event loop, which
schedules every task. Events reach it off every request's hot path: each process records into
an :class:`~rlm.security.buffer.EventBuffer` (a list append), whose thread sends a batch every
50 ms as one fire-and-forget actor call, written as one transaction. Admin reads
(``GET /security/events``) and policy changes are ordinary calls; a replica flushes its own
buffer first, so what it recorded is in what it reads.

Other processes of the service (an RLM session actor, the webhook worker) call
:func:`install_event_sink` once, then :func:`rlm.security.record_security_event` anywhere.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

import ray

from rlm.config import Settings
from rlm.errors import RLMError, error_from_payload
from rlm.runtime.placement import ON_HEAD
from rlm.security.buffer import EventBuffer
from rlm.security.events import (
    EventSink,
    SecurityEventIn,
    install_sink,
    installed_sink,
    record_violations,
)
from rlm.security.policies import SEVERITY_RANK, PolicySet
from rlm.security.service import SecurityService
from rlm.security.validator import InputValidator, ValidationResult, validate_text

__all__ = [
    "PromptGuard",
    "RaySecurity",
    "SecurityActor",
    "flush_installed_sink",
    "install_event_sink",
    "security_actor",
    "security_actor_name",
]


class _SecurityShell(SecurityService):
    """The service as an actor: errors cross as payloads (Ray would wrap them)."""

    def call(self, method: str, args: Sequence[Any], kwargs: dict[str, Any]) -> tuple[str, Any]:
        """Call a method of the service; ``("ok", value)`` or ``("err", payload)``."""
        try:
            return "ok", getattr(self, method)(*args, **kwargs)
        except RLMError as err:
            return "err", err.to_payload()


#: One thread: calls run in the order they arrive, as the chain's one writer needs.
SecurityActor = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=3, max_concurrency=1)(
    _SecurityShell
)


def security_actor_name(settings: Settings) -> str:
    """The name of ``settings.state_dir``'s security actor: one per state directory."""
    digest = hashlib.sha256(str(settings.state_dir.resolve()).encode()).hexdigest()[:12]
    return f"rlm-security-{digest}"


def security_actor(settings: Settings) -> Any:
    """The security actor of ``settings.state_dir`` (started if it is not running).

    With ``settings.database_url`` it keeps the log and policies in that PostgreSQL database:
    one chain for every instance on it (each instance has its own actor; the database
    serialises their appends).
    """
    return SecurityActor.options(
        name=security_actor_name(settings),
        namespace=settings.namespace,
        lifetime="detached",
        get_if_exists=True,
        **ON_HEAD,  # it opens the audit log (or its key) under the state directory
    ).remote(str(settings.state_dir), database_url=settings.database_dsn)


class RaySecurity:
    """The security actor as a server uses it: ``emit`` buffered, async calls and flush.

    Args:
        settings: The service settings (which state directory's actor).
        flush_s: Longest an event waits in this process before it is sent.
    """

    def __init__(self, settings: Settings, *, flush_s: float = 0.05) -> None:
        self._actor = security_actor(settings)
        self._buffer = EventBuffer(self._actor.record.remote, flush_s=flush_s)

    @property
    def buffer(self) -> EventBuffer:
        """The event buffer (also the process's sink, see :func:`install_event_sink`)."""
        return self._buffer

    def emit(self, event: SecurityEventIn) -> None:
        """Record an event (buffered; never blocks)."""
        self._buffer.emit(event)

    async def flush(self) -> None:
        """Send this process's waiting events and wait until they are written."""
        for receipt in self._buffer.send_now():
            await receipt

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call a :class:`SecurityService` method on the actor.

        Raises:
            RLMError: the service's error (e.g. ``InvalidInput`` for a bad policy change).
        """
        kind, value = await self._actor.call.remote(method, args, kwargs)
        if kind == "err":
            raise error_from_payload(value)
        return value

    def call_sync(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """:meth:`call` from synchronous code (a driver, the CLI)."""
        kind, value = ray.get(self._actor.call.remote(method, args, kwargs))
        if kind == "err":
            raise error_from_payload(value)
        return value


@functools.cache
def _sink_for(state_dir: str, namespace: str, database_url: str | None) -> EventBuffer:
    settings = Settings(state_dir=state_dir, namespace=namespace, database_url=database_url)
    return EventBuffer(security_actor(settings).record.remote)


def install_event_sink(settings: Settings) -> EventSink:
    """Make this process's :func:`rlm.security.record_security_event` send to the security
    actor of ``settings.state_dir`` (batched). Idempotent; call it once when a process of the
    service starts (an RLM session actor, a webhook worker).

    Returns:
        The installed sink.
    """
    current = installed_sink()
    # One sink per actor (the state directory's; the database URL, if any, comes along so
    # that a sink that starts the actor starts it on the right store).
    sink = _sink_for(str(settings.state_dir), settings.namespace, settings.database_dsn)
    if current is not sink:
        install_sink(sink)
    return sink


class PromptGuard:
    """Input validation for the prompts an RLM session sends, with its org's policies.

    One call per prompt (the root's query and context, every ``llm_query``/``rlm_query``
    prompt), or per batch (:meth:`check_many`), or per context (:meth:`check_context`): the
    org's ``input_validation`` policies run (cached ``cache_s``), what they find is recorded
    as a ``policy.violation`` (source ``rlm``), and the caller refuses the prompt when the
    result is not allowed. Usable from any thread of any process of the service (an RLM
    session host's session threads included: the policies are fetched through a future, not
    ``ray.get``).

    Example:
        >>> guard = PromptGuard(settings)  # doctest: +SKIP
        >>> guard.check(prompt, org_id="acme", user_id="ada", task_id=tid).raise_if_refused(
        ...     "the prompt"
        ... )  # doctest: +SKIP

    Args:
        settings: The service settings (which state directory's security actor).
        cache_s: How long an org's policies are reused.
    """

    def __init__(self, settings: Settings, *, cache_s: float = 2.0, source: str = "rlm") -> None:
        self._actor = security_actor(settings)
        self._sink = install_event_sink(settings)
        self._cache_s = cache_s
        self._cache: dict[str | None, tuple[float, PolicySet]] = {}
        self._source = source

    def _cached(self, org_id: str | None) -> PolicySet | None:
        hit = self._cache.get(org_id)
        if hit is not None and time.monotonic() - hit[0] < self._cache_s:
            return hit[1]
        return None

    def _keep(self, org_id: str | None, kind: str, value: Any) -> PolicySet:
        if kind == "err":
            raise error_from_payload(value)
        found = PolicySet(value)
        self._cache[org_id] = (time.monotonic(), found)
        return found

    def policies(self, org_id: str | None) -> PolicySet:
        """The org's policies in force (cached)."""
        found = self._cached(org_id)
        if found is not None:
            return found
        if org_id is None:
            return self._keep(org_id, "ok", {})
        ref = self._actor.call.remote("changed_policies", (org_id,), {})
        return self._keep(org_id, *ref.future().result())

    async def policies_async(self, org_id: str | None) -> PolicySet:
        """:meth:`policies` for an event loop (the core's): the fetch is awaited."""
        found = self._cached(org_id)
        if found is not None:
            return found
        if org_id is None:
            return self._keep(org_id, "ok", {})
        kind, value = await self._actor.call.remote("changed_policies", (org_id,), {})
        return self._keep(org_id, kind, value)

    def check(
        self,
        text: str,
        *,
        org_id: str | None,
        user_id: str | None,
        field: str = "prompt",
        task_id: str | None = None,
    ) -> ValidationResult:
        """Validate one prompt and record its violations; refuse it when not ``allowed``."""
        policies = self.policies(org_id)
        result = validate_text(text, policies, field=field)
        self._record(result, policies, org_id, user_id, task_id)
        return result

    def check_many(
        self,
        texts: Sequence[str],
        *,
        org_id: str | None,
        user_id: str | None,
        field: str = "prompt",
        task_id: str | None = None,
    ) -> ValidationResult:
        """Validate the prompts of one batch together: one result (violations name
        ``field[i]``), recorded once; refuse the batch when it is not ``allowed``."""
        policies = self.policies(org_id)
        return self.check_many_with(
            policies, texts, org_id=org_id, user_id=user_id, field=field, task_id=task_id
        )

    def check_many_with(
        self,
        policies: PolicySet,
        texts: Sequence[str],
        *,
        org_id: str | None,
        user_id: str | None,
        field: str = "prompt",
        task_id: str | None = None,
    ) -> ValidationResult:
        """:meth:`check_many` with the org's policies already in hand (no fetch: for an
        event loop, after :meth:`policies_async`)."""
        if len(texts) == 1:
            result = validate_text(texts[0], policies, field=field)
            self._record(result, policies, org_id, user_id, task_id)
            return result
        validator = InputValidator(policies)
        found = []
        done: dict[str, int] = {}
        for i, text in enumerate(texts):
            if text in done:  # the same prompt twice: its violations are known
                continue
            done[text] = i
            found.extend(validator.validate_text(text, field=f"{field}[{i}]").violations)
        found.sort(key=lambda v: (-SEVERITY_RANK[v.severity], -policies.priority(v.policy_id)))
        allowed = all(v.severity != "critical" for v in found)
        result = ValidationResult(allowed, "", found)
        self._record(result, policies, org_id, user_id, task_id)
        return result

    def check_context(
        self,
        context: str | Sequence[Any] | Mapping[str, Any],
        *,
        org_id: str | None,
        user_id: str | None,
        task_id: str | None = None,
    ) -> ValidationResult:
        """Validate an RLM context as ``POST /execute`` validates ``input.context`` (its text,
        up to the ``input-size`` policy's ``maxScanChars``): for a context read on the session
        host (``input.source``), which the API never saw."""
        policies = self.policies(org_id)
        result = InputValidator(policies).check_request("", {"context": context})
        self._record(result, policies, org_id, user_id, task_id)
        return result

    def _record(
        self,
        result: ValidationResult,
        policies: PolicySet,
        org_id: str | None,
        user_id: str | None,
        task_id: str | None,
    ) -> None:
        if result.violations:
            record_violations(
                result.violations,
                source=self._source,
                org_id=org_id,
                user_id=user_id,
                refused=not result.allowed,
                min_severity=policies.settings("audit-log").min_severity,
                details={"taskId": task_id} if task_id else None,
                sink=self._sink,
            )


async def flush_installed_sink() -> None:
    """Send the waiting events of this process's sink and wait until they are written."""
    sink = installed_sink()
    if isinstance(sink, EventBuffer):
        await asyncio.gather(*sink.send_now())
