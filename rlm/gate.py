"""The admission gate: rate limits, concurrency leases and quota holds, all or nothing.

Every request the engine serves passes :meth:`AdmissionGate.admit` first; a task's admission
also leases its concurrent agents and holds its planned agent calls on the user, team and org
quotas. A refused request counts for nothing. The code that ends a task gives back what the
gate took (:meth:`~AdmissionGate.release` and :meth:`~AdmissionGate.settle`), exactly once.

The gate is plain Python: the core actor composes it, and unit tests drive it without Ray.

Example:
    >>> gate = AdmissionGate(QuotaLedgerService("/tmp/q.db"), hold_ttl_s=900)  # doctest: +SKIP
    >>> headers = gate.admit(admission, task, agents=2)                          # doctest: +SKIP
    >>> gate.release(task.task_id, admission)                                    # doctest: +SKIP
    >>> gate.settle(task.task_id, agent_calls=7, busy_s=0.5)                     # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from datetime import timedelta
from typing import Any, Protocol

from rlm.admission import Admission
from rlm.errors import RLMError
from rlm.planning import Plan
from rlm.quotas.clock import Clock, SystemClock, utc_now_from
from rlm.quotas.service import BatchCall, QuotaLedgerService
from rlm.quotas.wire import Slot, pack_outcome
from rlm.ratelimit import RateLimiter

__all__ = ["HISTORY", "AdmissionGate", "TaskClaim", "TaskTokens"]

log = logging.getLogger(__name__)

#: Settlements the quota ledger remembers (for repeated reconciles), at most.
HISTORY = 10_000


class TaskClaim(Protocol):
    """What the gate needs of a task it admits (the runtime's ``TaskSpec`` is one).

    The gate writes ``team_id``: the team the ledger charges, which may differ from the claim.
    """

    task_id: str
    team_id: str | None

    @property
    def plan(self) -> Plan:
        """The task's plan; its ``agent_calls`` are held on the quotas."""
        ...


class AdmissionGate:
    """Rate limits, concurrency leases and quota holds in front of the engine.

    Args:
        quotas: The durable quota ledger holds are made on.
        hold_ttl_s: A hold no running task owns is released (:meth:`reap_holds`) once older.
        limiter: The rate limiter (a fresh one by default).
        clock: Where :meth:`reap_holds` reads the time (the ledger's own clock, ideally).
    """

    def __init__(
        self,
        quotas: QuotaLedgerService,
        *,
        hold_ttl_s: float,
        limiter: RateLimiter | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._quotas = quotas
        self._hold_ttl = timedelta(seconds=hold_ttl_s)
        self._limiter = limiter or RateLimiter()
        self._clock: Clock = clock or SystemClock()
        self._reservations: dict[str, str] = {}
        # More calls held for running tasks, beyond their plan: (key, reservation id, calls).
        self._extensions: dict[str, list[tuple[str, str, int]]] = {}

    # -- admission ----------------------------------------------------------------------------

    def admit(
        self, admission: Admission | None, task: TaskClaim | None = None, agents: int = 1
    ) -> dict[str, str]:
        """Check the request rate (and a task's concurrent agents) and count them, or raise.

        A refused request counts for nothing: the rate is only peeked until every check has
        passed, and the agents are only leased then.

        Args:
            admission: The caller's key and limits; ``None`` (a trusted Python caller) passes.
                One with ``rate_counted`` was counted by an earlier :meth:`admit`: only its
                task's agents are leased and its calls held (no rate-limit headers then).
            task: The task being admitted, if any: its agents are leased and its planned calls
                held on the quotas.
            agents: Agents the task runs at once (the lease size).

        Returns:
            The rate-limit headers of the counted request.

        Raises:
            RLMError: ``RateLimited`` or ``QuotaExceeded`` (or the ledger's refusal), carrying
                the headers the HTTP answer should have.
        """
        if admission is None:
            return {}
        counted_before = admission.rate_counted
        headers: dict[str, str] = {}
        if task is None and not counted_before:
            # Nothing can refuse it after the rate: count at once (one check, not a look and
            # then a count: on PostgreSQL's shared windows each is a round trip).
            counted = self._limiter.check_and_consume(admission.key, admission.limits)
            counted.raise_if_rejected()
            return counted.headers()
        if not counted_before:
            rate = self._limiter.peek(admission.key, admission.limits)
            headers = rate.headers()
            if not rate.allowed:
                try:
                    rate.raise_if_rejected()
                except RLMError as err:
                    raise err.with_headers(headers) from None
        if task is not None:
            lease = self._limiter.acquire(
                admission.key, agents, admission.limits.concurrent_agents, lease_id=task.task_id
            )
            if not lease.allowed:
                try:
                    lease.raise_if_rejected()
                except RLMError as err:
                    raise err.with_headers({"Retry-After": "1"}) from None
            try:
                self._reserve(admission, task, agents)
            except RLMError as err:
                self._limiter.release(task.task_id)
                raise err.with_headers(headers) from None
        if counted_before:
            return headers
        counted = self._limiter.check_and_consume(admission.key, admission.limits)
        # Refused after the look admitted it: on shared windows another instance counted in
        # between (in one actor it cannot happen). Give back what was taken; never run uncounted.
        if not counted.allowed:
            if task is not None:
                self._limiter.release(task.task_id)
                self.settle(task.task_id, 0, 0.0)
            counted.raise_if_rejected()
        return counted.headers()

    def release(self, task_id: str, admission: Admission | None) -> None:
        """Give back the concurrency lease of a task admitted with ``admission``."""
        if admission is not None:
            self._limiter.release(task_id)

    def settle(self, task_id: str, agent_calls: int, busy_s: float) -> None:
        """Charge what a task actually used and free its holds (once).

        The calls are charged to the task's holds so that the total charged is
        ``agent_calls``: each extension up to the calls it held, the admission hold the rest.
        """
        reservation = self._reservations.pop(task_id, None)
        extensions = self._extensions.pop(task_id, [])
        if reservation is None:
            return
        try:
            first = max(0, agent_calls - sum(calls for _, _, calls in extensions))
            self._quotas.reconcile(reservation, first, busy_s / 3600.0)
            left = agent_calls - first
            for _, extension, calls in extensions:
                charged = min(left, calls)
                self._quotas.reconcile(extension, charged, 0.0)
                left -= charged
        except Exception:  # pragma: no cover - never fail a task's ending over it
            log.exception("could not reconcile the quota of task %s", task_id)

    def extend(self, task_id: str, admission: Admission, calls: int = 1) -> None:
        """Hold ``calls`` more agent calls for a running task, before they are sent.

        For calls the plan did not count (an LM operation asking again after an unparsable
        answer): held on the same levels as the task, all or nothing, with no further
        concurrency lease (the task holds its own).

        Raises:
            QuotaExceeded: some level has no room; nothing changed.
        """
        if admission.user_id is None or task_id not in self._reservations:
            return
        held = self._extensions.setdefault(task_id, [])
        key = f"{task_id}+{len(held) + 1}"
        reservation = self._quotas.reserve(
            admission.user_id,
            calls,
            tier=admission.tier,
            task_id=key,
            team_id=admission.team_id if self._known("team", admission.team_id) else None,
            org_id=admission.org_id if self._known("org", admission.org_id) else None,
            extends=task_id,
        )
        held.append((key, reservation.reservation_id, calls))

    def _owned(self, task_id: str | None) -> bool:
        """Whether a hold's task is running here (an extension's key names its task)."""
        if task_id is None:
            return False
        return task_id.split("+", 1)[0] in self._reservations

    def holds(self, task_id: str) -> bool:
        """Whether the gate holds quota for ``task_id`` (admitted, not yet settled)."""
        return task_id in self._reservations

    def _reserve(self, admission: Admission, task: TaskClaim, concurrent: int) -> None:
        """Hold the planned agent calls on the user, team and org quotas, all or nothing."""
        if admission.user_id is None:
            return
        team_id = admission.team_id if self._known("team", admission.team_id) else None
        org_id = admission.org_id if self._known("org", admission.org_id) else None
        held = self._quotas.reserve(
            admission.user_id,
            task.plan.agent_calls,
            tier=admission.tier,
            task_id=task.task_id,
            team_id=team_id,
            org_id=org_id,
            concurrent_agents=concurrent,
        )
        self._reservations[task.task_id] = held.reservation_id
        task.team_id = held.team_id  # the team charged: the ledger's membership, not the claim

    def token_quota(self, task_id: str, admission: Admission | None) -> TaskTokens | None:
        """The task's LM token account on the user's quotas (``None``: nothing to charge,
        e.g. a trusted Python caller, as for agent calls)."""
        if admission is None or admission.user_id is None:
            return None
        return TaskTokens(
            self._quotas,
            task_id,
            admission,
            self._known,
            lambda calls=1: self.extend(task_id, admission, calls),
        )

    def _known(self, kind: str, name: str | None) -> bool:
        # Tokens may name teams and orgs the operator never loaded. Such a claim counts as no
        # claim: the ledger then charges the team and org it records for the user, so a token
        # cannot take a member out of its team's pool or its org's tree.
        if name is None:
            return False
        try:
            self._quotas.governing_orgs(kind, name)
        except RLMError:
            return False
        return True

    # -- holds nobody owns --------------------------------------------------------------------

    def release_task_holds(self, task_ids: Collection[str]) -> int:
        """Release the holds (and agent leases) of these tasks (interrupted with an instance
        that died: nobody will settle them). Returns how many quota holds were released."""
        if not task_ids:
            return 0
        wanted = set(task_ids)
        # Their concurrent-agent leases too (named for the tasks): shared on PostgreSQL, they
        # would otherwise hold the dead instance's agents against the client for good.
        for task_id in wanted:
            self._limiter.release(task_id)
        released = 0
        for held in self._quotas.open_reservations():
            if held.task_id is not None and held.task_id.split("+", 1)[0] in wanted:
                self._quotas.release(held.reservation_id)
                released += 1
        for tokens in self._quotas.open_token_holds():
            if tokens.task_id is not None and tokens.task_id.split("+", 1)[0] in wanted:
                self._quotas.release_tokens(tokens.hold_id)
                released += 1
        if released:
            log.warning("released %d quota hold(s) of interrupted tasks", released)
        return released

    def release_open_holds(self) -> int:
        """Release every open hold; for an engine starting, when no task of a previous one
        is still running. Returns how many were released."""
        held = self._quotas.open_reservations()
        for reservation in held:
            self._quotas.release(reservation.reservation_id)
        tokens = self._quotas.open_token_holds()
        for hold in tokens:  # their requests died with the engine
            self._quotas.release_tokens(hold.hold_id)
        return len(held) + len(tokens)

    def prune(self) -> int:
        """Bound the ledger's history of settlements (one per task): keep the
        :data:`HISTORY` newest, none older than the hold time-to-live. A front end repeating
        a reconcile (``quota_batch``) within that time is still answered idempotently."""
        return int(self._quotas.prune_history(self._hold_ttl, max_count=HISTORY))

    def reap_holds(self, running_elsewhere: Collection[str] = ()) -> int:
        """Release quota holds (reservations and token holds) that no running task owns once
        they are ``hold_ttl_s`` old: a front end that reserved (``quota_batch``) and died
        before reconciling must not keep a user's agents leased (or tokens held) forever. A
        running task's hold is never reaped.

        Args:
            running_elsewhere: Tasks other instances run (a shared store): their holds are
                theirs, however old.
        """
        cutoff = utc_now_from(self._clock) - self._hold_ttl

        def owned(task_id: str | None) -> bool:
            if self._owned(task_id):
                return True
            return task_id is not None and task_id.split("+", 1)[0] in running_elsewhere

        reaped = 0
        for held in self._quotas.open_reservations():
            if not owned(held.task_id) and held.created_at <= cutoff:
                self._quotas.release(held.reservation_id)
                reaped += 1
        for tokens in self._quotas.open_token_holds():
            if not owned(tokens.task_id) and tokens.created_at <= cutoff:
                self._quotas.release_tokens(tokens.hold_id)
                reaped += 1
        if reaped:
            log.warning("released %d quota hold(s) no running task owned", reaped)
        return reaped

    # -- threshold events (for the webhook outbox) ---------------------------------------------

    def quota_events(self) -> list[tuple[str, dict[str, Any], str | None]]:
        """The ``quota.threshold_exceeded`` events the ledger has queued, oldest first.

        Returns:
            ``(key, payload, org)`` each: ``org`` is the org whose org-wide webhooks get the
            event (a user's nearest org, a team's org, an org itself), ``None`` when there is
            none. Cheap when empty.
        """
        if not self._quotas.pending_event_count():
            return []
        out: list[tuple[str, dict[str, Any], str | None]] = []
        for key, payload in self._quotas.pending_event_items():
            out.append((key, payload, self._event_org(payload.get("data", {}))))
        return out

    def _event_org(self, data: dict[str, Any]) -> str | None:
        """The org whose org-wide webhooks get a threshold event: an org's own, a team's
        org (both in ``orgId``), a user's nearest org."""
        org, user = data.get("orgId"), data.get("userId")
        if isinstance(org, str):
            return org
        orgs = self._quotas.governing_orgs("user", user) if isinstance(user, str) else []
        return orgs[0] if orgs else None

    def ack_quota_events(self, keys: Sequence[str]) -> None:
        """Take events out of the ledger's queue once the outbox holds them."""
        self._quotas.ack_events(list(keys))

    # -- the ledger's own methods -------------------------------------------------------------

    def quota(
        self,
        method: str,
        args: Sequence[Any],
        kwargs: dict[str, Any],
        headers: dict[str, str],
    ) -> Any:
        """Call a method of the quota ledger (status, check, configure...).

        Raises:
            RLMError: the ledger's refusal, carrying ``headers``.
        """
        try:
            return getattr(self._quotas, method)(*args, **kwargs)
        except RLMError as err:
            raise err.with_headers(headers) from None

    def quota_batch(self, calls: Sequence[BatchCall]) -> list[Slot]:
        """Apply many admission calls in one commit (see ``QuotaLedgerService.batch``).

        Each slot answers ``("ok", value)`` or ``("err", payload)``, like a single call, or
        carries a reservation or settlement as a compact tuple (see :mod:`rlm.quotas.wire`;
        :func:`~rlm.quotas.wire.unpack_slot` reads any slot back).
        """
        return [pack_outcome(o) for o in self._quotas.batch(calls)]


class TaskTokens:
    """One task's LM token holds on the quota ledger (the broker's ``TokenQuota``), and
    ``extra_call(calls=1)``, which holds more agent calls for requests the plan did not count.

    Each LM request holds its worst case on the user's daily token quota before it is sent
    (refused with ``QUOTA_EXCEEDED`` over ``dailyTokenLimit``) and settles to the provider's
    reported usage, which is recorded on the user, the team and the org chain charged, as
    agent calls are.
    """

    def __init__(
        self,
        quotas: QuotaLedgerService,
        task_id: str,
        admission: Admission,
        known: Callable[[str, str | None], bool],
        extend: Callable[..., None],
    ) -> None:
        assert admission.user_id is not None
        self.extra_call = extend
        self._quotas = quotas
        self._task_id = task_id
        self._user_id = admission.user_id
        self._tier = admission.tier
        self._team_id = admission.team_id if known("team", admission.team_id) else None
        self._org_id = admission.org_id if known("org", admission.org_id) else None

    def reserve(self, tokens: int) -> str:
        """Hold ``tokens``; the hold's id. Raises ``QuotaExceeded`` over the daily limit."""
        hold = self._quotas.reserve_tokens(
            self._user_id,
            tokens,
            tier=self._tier,
            team_id=self._team_id,
            org_id=self._org_id,
            task_id=self._task_id,
        )
        return str(hold.hold_id)

    def settle(self, hold: str, input_tokens: int, output_tokens: int, cost: float) -> None:
        """Charge what the call used in place of the hold."""
        self._quotas.settle_tokens(hold, input_tokens, output_tokens, cost)

    def release(self, hold: str) -> None:
        """Drop the hold; nothing is charged."""
        self._quotas.release_tokens(hold)
