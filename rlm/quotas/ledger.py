"""The quota ledger: admission, reconciliation and the views of users, teams and orgs.

One plain object holds every user, team and org; time comes from an injected
:class:`~rlm.quotas.clock.Clock`. Nothing here knows about Ray or SQLite: the runtime wraps
:class:`~rlm.quotas.service.QuotaLedgerService` (this ledger plus a store) as an actor.

Admission reserves a task's planned agent calls on every level at once — the user's daily,
weekly and monthly windows, the team pool (and the member's allocation, if it has one), the
user's org and every ancestor — or on none. A refusal raises :class:`~rlm.errors.QuotaExceeded`
and changes no counter. Reconciliation replaces the hold with actual usage exactly once.

Language-model requests hold their worst-case tokens and settle to the reported usage (tokens
and cost on the same levels), refused only by a user's ``dailyTokenLimit``; see
:mod:`rlm.quotas.tokens`.

Overspend rule: when a task's actual usage exceeds what it reserved, the actual amount is
charged (the work was done), which may push a window past its limit; the window then reports
``exceeded`` and refuses admissions until it resets. Compute hours are charged the same way,
since they are only known afterwards.

Example:
    >>> from datetime import UTC, datetime
    >>> from rlm.quotas.clock import FrozenClock
    >>> ledger = QuotaLedger(FrozenClock(datetime(2028, 2, 29, tzinfo=UTC)))
    >>> r = ledger.reserve("ada", 40, tier="user", task_id="t1")
    >>> ledger.reconcile(r.reservation_id, 25, 0.5).agent_calls
    25
"""

from __future__ import annotations

import copy
import secrets
from dataclasses import replace
from datetime import timedelta
from typing import Any

from rlm.errors import InvalidInput, QuotaExceeded
from rlm.models.base import parse_model
from rlm.models.quotas import (
    AllocationDecision,
    Organization,
    OrganizationHierarchy,
    QuotaConfig,
    TeamMember,
    TeamQuotaStatus,
    UserQuotaStatus,
)
from rlm.quotas.accounts import UserAccount, UserLimits
from rlm.quotas.admission import AdmissionRequest, plan_admission, reservation_counters
from rlm.quotas.alerts import alert_event, mark_crossed_thresholds
from rlm.quotas.changes import ChangeSet, Snapshot
from rlm.quotas.clock import Clock, utc_now_from
from rlm.quotas.counters import to_micro, to_nano
from rlm.quotas.inputs import check_count, check_id
from rlm.quotas.records import (
    Reservation,
    Settlement,
    TokenHold,
    TokenSettlement,
    TransferReceipt,
)
from rlm.quotas.settings import QuotaSettings, Tier, parse_tier
from rlm.quotas.state import LedgerState
from rlm.quotas.tokens import MAX_TOKENS, hold_tokens, settle_token_hold, stale_token_holds
from rlm.quotas.windows import WindowStarts

__all__ = ["QuotaLedger"]


class QuotaLedger:
    """Users, teams and the org tree, with all-or-nothing admission.

    Not thread-safe: one caller at a time (an actor, or a lock in the service).

    Args:
        clock: Where time comes from; must return timezone-aware datetimes.
        settings: Tier defaults and alert thresholds.
    """

    def __init__(self, clock: Clock, settings: QuotaSettings | None = None) -> None:
        self._clock = clock
        self._settings = settings or QuotaSettings()
        self._defaults = UserLimits.defaults(self._settings)
        self._state = LedgerState()
        self._last_starts: WindowStarts | None = None

    @property
    def settings(self) -> QuotaSettings:
        """The tier defaults in force."""
        return self._settings

    # -- users -----------------------------------------------------------------------------

    def set_user_config(self, config: QuotaConfig, *, tier: Tier = "user") -> QuotaConfig:
        """Give ``config.user_id`` explicit limits replacing its tier's defaults.

        Lowering a limit below current usage is allowed: the window then reports ``exceeded``.

        Args:
            config: The limits.
            tier: The tier recorded if the user is new.

        Returns:
            The config now in force.
        """
        config = parse_model(QuotaConfig, config)
        user_id = check_id(config.user_id, "userId")
        account = self._account(user_id, parse_tier(tier), self._starts())
        account.config = config.model_copy()
        self._state.changed.add(("config", user_id))
        return account.config.model_copy()

    def clear_user_config(self, user_id: str) -> None:
        """Return ``user_id`` to its tier's default limits."""
        account = self._state.users.get(user_id)
        if account is not None and account.config is not None:
            account.config = None
            self._state.changed.add(("config", user_id))

    def user_config(self, user_id: str, *, tier: Tier | None = None) -> QuotaConfig:
        """The limits in force for ``user_id`` (``tier`` overrides the recorded tier)."""
        return self._limits_of(user_id, tier).to_config(user_id)

    def set_user_org(self, user_id: str, org_id: str | None, *, tier: Tier = "user") -> None:
        """Place ``user_id`` in ``org_id`` (``None``: in no org).

        Open reservations keep charging the orgs they were made against.
        """
        check_id(user_id, "userId")
        if org_id is not None:
            self._state.orgs.get(org_id)
        account = self._account(user_id, parse_tier(tier), self._starts())
        account.org_id = org_id
        self._state.changed.add(("user", user_id))

    def user_status(self, user_id: str, *, tier: Tier | None = None) -> UserQuotaStatus:
        """The API's ``UserQuotaStatus`` (reservations in flight count as used).

        Args:
            user_id: The user; an unknown user shows empty windows.
            tier: The caller's tier, if known; else the recorded tier (``user`` when new).
        """
        starts = self._starts()
        tier = None if tier is None else parse_tier(tier)
        account = self._state.users.get(user_id) or UserAccount.new(user_id, tier or "user", starts)
        held = self._state.tokens_held.get(user_id, 0)
        return account.status(account.limits(self._defaults, tier), starts, held)

    # -- admission -------------------------------------------------------------------------

    def check(
        self,
        user_id: str,
        agents: int,
        *,
        tier: Tier,
        team_id: str | None = None,
        org_id: str | None = None,
        concurrent_agents: int = 1,
        compute_hours: float = 0.0,
    ) -> AllocationDecision:
        """Would :meth:`reserve` admit this? A dry run: nothing is charged.

        Raises:
            InvalidInput: The request itself is malformed (unknown team or org, bad counts).
        """
        request = AdmissionRequest.parse(
            user_id, agents, tier, team_id, org_id, concurrent_agents, compute_hours
        )
        if request.team_id is None:  # a member always draws on its team's pool
            request = replace(request, team_id=self._state.teams.team_of(request.user_id))
        account = self._state.users.get(request.user_id)
        try:
            plan_admission(
                request,
                account,
                self._defaults,
                self._state.teams,
                self._state.orgs,
                self._starts(),
            )
        except QuotaExceeded as err:
            return AllocationDecision(allowed=False, reason=err.message)
        return AllocationDecision(allowed=True, reason="Quota available")

    def reserve(
        self,
        user_id: str,
        agents: int,
        *,
        tier: Tier,
        task_id: str,
        team_id: str | None = None,
        org_id: str | None = None,
        concurrent_agents: int = 1,
        compute_hours: float = 0.0,
    ) -> Reservation:
        """Hold ``agents`` planned calls on every level at once, plus a concurrency lease.

        Idempotent while open: the same ``task_id`` with the same request returns the open
        reservation instead of holding twice.

        Args:
            user_id: Who is charged.
            agents: Planned agent calls (>= 1).
            tier: The user's tier (its defaults apply unless an explicit config is set).
            task_id: The task admitted.
            team_id: Also charge this team's pool (the user must be a member); default: the
                user's team if it belongs to exactly one (several: ``InvalidInput``).
            org_id: The user's org; default: the org recorded for the user, if any.
            concurrent_agents: Agents the task runs at once (the lease size).
            compute_hours: Planned compute, held like agent calls (usually 0: unknown).

        Returns:
            The reservation to reconcile or release.

        Raises:
            QuotaExceeded: Some level has no room; ``details`` holds ``resource``, ``period``,
                ``limit``, ``used``, ``resetTime``. Nothing changed.
            InvalidInput: Malformed request, unknown team/org, not a team member, or the task
                already holds a different reservation.
        """
        check_id(task_id, "taskId")
        request = AdmissionRequest.parse(
            user_id, agents, tier, team_id, org_id, concurrent_agents, compute_hours
        )
        if request.team_id is None:  # a member always draws on its team's pool
            request = replace(request, team_id=self._state.teams.team_of(request.user_id))
        existing = self._state.open_by_task.get(task_id)
        if existing is not None:
            res = self._state.open[existing]
            if not request.matches(res):
                raise InvalidInput(
                    f"task {task_id!r} already holds a different reservation",
                    {"taskId": task_id, "reservationId": res.reservation_id},
                    field="taskId",
                )
            return res
        starts = self._starts()
        account = self._state.users.get(request.user_id)
        plan = plan_admission(
            request, account, self._defaults, self._state.teams, self._state.orgs, starts
        )
        for hold in plan.holds:
            hold.counter.hold(hold.start, request.agents, request.compute)
        account = plan.account
        if plan.is_new:
            self._state.users[user_id] = account
        account.tier = request.tier
        if plan.org_ids and account.org_id is None:
            account.org_id = plan.org_ids[0]
        account.concurrent += request.concurrent_agents
        res = Reservation(
            reservation_id=f"res_{secrets.token_hex(16)}",
            task_id=task_id,
            user_id=user_id,
            agents=request.agents,
            compute_micro=request.compute,
            concurrent_agents=request.concurrent_agents,
            team_id=request.team_id,
            org_ids=plan.org_ids,
            created_at=starts.now,
        )
        self._state.open[res.reservation_id] = res
        self._state.open_by_task[task_id] = res.reservation_id
        self._state.touch(res)
        self._state.changed.add(("reservation", res.reservation_id))
        return res

    def reconcile(
        self, reservation_id: str, actual_agent_calls: int, compute_hours: float = 0.0
    ) -> Settlement:
        """Replace a reservation's hold with actual usage on every level; release its lease.

        Exactly once: a repeated call (or one after :meth:`release`) changes nothing and
        returns the first settlement. Actual usage above the reservation is charged in full.

        Raises:
            InvalidInput: Unknown reservation, or negative usage.
        """
        done = self._state.settled.get(reservation_id)
        if done is not None:
            return done
        res = self._open_reservation(reservation_id)
        agent_calls = check_count(actual_agent_calls, "agentCalls")
        compute = to_micro(compute_hours, field="computeHours")
        return self._settle(res, agent_calls, compute, released=False, starts=self._starts())

    def release(self, reservation_id: str) -> Settlement:
        """Settle a reservation with zero usage (the task failed before any call ran).

        Idempotent like :meth:`reconcile`.
        """
        done = self._state.settled.get(reservation_id)
        if done is not None:
            return done
        res = self._open_reservation(reservation_id)
        return self._settle(res, 0, 0, released=True, starts=self._starts())

    def reap_expired(self, max_age: timedelta, *, charge_planned: bool = False) -> list[Settlement]:
        """Settle reservations older than ``max_age`` whose task never reported back.

        Args:
            max_age: The lease TTL; reservations created at or before ``now - max_age`` go.
            charge_planned: Charge the planned amount instead of nothing (the default releases,
                as for tasks marked failed after a restart).

        Returns:
            The settlements made, oldest first.
        """
        starts = self._starts()
        cutoff = starts.now - max_age
        stale = sorted(
            (r for r in self._state.open.values() if r.created_at <= cutoff),
            key=lambda r: r.created_at,
        )
        out = []
        for res in stale:
            if charge_planned:
                out.append(self._settle(res, res.agents, res.compute_micro, False, starts))
            else:
                out.append(self._settle(res, 0, 0, True, starts))
        return out

    def prune_history(self, max_age: timedelta) -> int:
        """Forget settlements (token ones too) and transfer receipts older than ``max_age``.

        After this, a repeated reconcile or transfer with a forgotten id is no longer
        recognised as a repeat (reconcile then raises ``InvalidInput``).

        Returns:
            How many records were forgotten.
        """
        cutoff = self._starts().now - max_age
        old = [k for k, s in self._state.settled.items() if s.settled_at <= cutoff]
        for key in old:
            del self._state.settled[key]
            self._state.changed.add(("reservation", key))
        tokens = self._state.token_settled
        old_tokens = [k for k, t in tokens.items() if t.settled_at <= cutoff]
        for key in old_tokens:
            del tokens[key]
            self._state.changed.add(("token_hold", key))
        old += old_tokens
        receipts = self._state.teams.receipts
        old_keys = [k for k, r in receipts.items() if r.transferred_at <= cutoff]
        for key in old_keys:
            del receipts[key]
            self._state.changed.add(("transfer", key))
        return len(old) + len(old_keys)

    def reservation(self, reservation_id: str) -> Reservation | None:
        """The open reservation ``reservation_id``, or ``None`` once settled or unknown."""
        return self._state.open.get(reservation_id)

    def open_reservations(self, user_id: str | None = None) -> list[Reservation]:
        """Open reservations (of ``user_id``, if given), oldest first."""
        found = [r for r in self._state.open.values() if user_id is None or r.user_id == user_id]
        return sorted(found, key=lambda r: r.created_at)

    # -- language-model tokens -------------------------------------------------------------

    def reserve_tokens(
        self,
        user_id: str,
        tokens: int,
        *,
        tier: Tier = "user",
        team_id: str | None = None,
        org_id: str | None = None,
        task_id: str | None = None,
    ) -> TokenHold:
        """Hold a language-model request's worst-case ``tokens`` before it is sent.

        Team and org default as for :meth:`reserve`; nothing is charged until
        :meth:`settle_tokens`. Without a ``dailyTokenLimit`` the hold is not even stored.

        Args:
            user_id: Who is charged.
            tokens: The request's worst case, input plus maximum output (>= 1).
            tier: The user's tier (its ``daily_token_limit`` applies without an explicit
                config).
            team_id: The team charged on settlement; default: the user's only team.
            org_id: The org charged on settlement; default: the org recorded for the user.
            task_id: The task the request belongs to (the reaper spares running tasks' holds).

        Returns:
            The hold to settle or release.

        Raises:
            QuotaExceeded: Tokens settled today + open holds + ``tokens`` would pass the daily
                limit; ``details`` as for :meth:`reserve` (``resource`` ``tokens``). Nothing
                changed.
            InvalidInput: Malformed request, unknown team or org, or not a team member.
        """
        return hold_tokens(
            self._state,
            self._defaults,
            self._starts(),
            user_id,
            tokens,
            tier=tier,
            team_id=team_id,
            org_id=org_id,
            task_id=task_id,
        )

    def settle_tokens(
        self, hold_id: str, input_tokens: int, output_tokens: int, cost_usd: float
    ) -> TokenSettlement:
        """Replace a token hold with the usage the provider reported, on every level.

        Exactly once, like :meth:`reconcile`: a repeat (or a call after :meth:`release_tokens`)
        changes nothing and returns the first settlement. Usage above the hold is charged.

        Raises:
            InvalidInput: Unknown hold, or negative (or absurd) usage or cost.
        """
        done = self._state.token_settled.get(hold_id)
        if done is not None:
            return done
        hold = self._open_token_hold(hold_id)
        inputs = check_count(input_tokens, "inputTokens", maximum=MAX_TOKENS)
        outputs = check_count(output_tokens, "outputTokens", maximum=MAX_TOKENS)
        cost = to_nano(cost_usd, field="costUsd")
        return settle_token_hold(self._state, hold, inputs, outputs, cost, self._starts())

    def release_tokens(self, hold_id: str) -> TokenSettlement:
        """Drop a token hold, charging nothing (the request was never answered).

        Idempotent like :meth:`settle_tokens`.
        """
        done = self._state.token_settled.get(hold_id)
        if done is not None:
            return done
        hold = self._open_token_hold(hold_id)
        return settle_token_hold(self._state, hold, 0, 0, 0, self._starts(), released=True)

    def reap_expired_tokens(self, max_age: timedelta) -> list[TokenSettlement]:
        """Release token holds older than ``max_age`` (made at or before ``now - max_age``),
        oldest first; see :meth:`reap_expired`."""
        starts = self._starts()
        stale = stale_token_holds(self._state, starts.now - max_age)
        return [settle_token_hold(self._state, h, 0, 0, 0, starts, released=True) for h in stale]

    def token_hold(self, hold_id: str) -> TokenHold | None:
        """The open token hold ``hold_id``, or ``None`` once settled or unknown."""
        return self._state.token_holds.get(hold_id)

    def open_token_holds(self, user_id: str | None = None) -> list[TokenHold]:
        """Open token holds (of ``user_id``, if given), oldest first."""
        holds = self._state.token_holds.values()
        return sorted(
            (h for h in holds if user_id is None or h.user_id == user_id),
            key=lambda h: h.created_at,
        )

    # -- teams -----------------------------------------------------------------------------

    def create_team(
        self,
        team_id: str,
        team_name: str,
        total_agent_pool: int,
        total_compute_hours: float,
        total_storage_gb: float = 0.0,
        org_id: str | None = None,
    ) -> TeamQuotaStatus:
        """Create a team with a monthly pool in ``org_id``; see :mod:`rlm.quotas.teams`.

        Raises:
            InvalidInput: The team exists, bad amounts, or ``org_id`` is unknown.
        """
        if org_id is not None:
            self._state.orgs.get(org_id)
        starts = self._starts()
        self._state.teams.create(
            team_id,
            team_name,
            total_agent_pool,
            total_compute_hours,
            total_storage_gb,
            starts,
            org_id,
        )
        return self._state.teams.status(team_id, starts)

    def add_member(
        self,
        team_id: str,
        user_id: str,
        role: str = "member",
        agents: int | None = None,
        compute_hours: float | None = None,
    ) -> TeamMember:
        """Add ``user_id`` to the team (or change its role), capped if an allocation is given.

        All or nothing: an allocation the pool cannot take leaves a new member out.

        Raises:
            InvalidInput: Unknown team, bad id, or the allocation does not fit.
        """
        starts = self._starts()
        teams = self._state.teams
        earlier = teams.get(team_id).members.get(user_id)
        old_role = None if earlier is None else earlier.role
        member = teams.add_member(team_id, user_id, role, starts)
        if agents is None and compute_hours is None:
            return member.view(starts)
        try:
            teams.set_member_allocation(team_id, user_id, agents or 0, compute_hours or 0.0, starts)
        except InvalidInput:
            if old_role is None:
                teams.detach(team_id, user_id)
            else:
                member.role = old_role
            raise
        return member.view(starts)

    def set_member_allocation(
        self, team_id: str, user_id: str, agents: int, compute_hours: float
    ) -> TeamMember:
        """Cap a member's monthly share of the pool (Σ caps ≤ pool; never below usage)."""
        starts = self._starts()
        member = self._state.teams.set_member_allocation(
            team_id, user_id, agents, compute_hours, starts
        )
        return member.view(starts)

    def set_project_allocation(
        self, team_id: str, project_id: str, agents: int, compute_hours: float, name: str = ""
    ) -> TeamQuotaStatus:
        """Allocate part of the pool to a project (Σ project allocations ≤ pool)."""
        self._state.teams.set_project_allocation(team_id, project_id, name, agents, compute_hours)
        return self._state.teams.status(team_id, self._starts())

    def transfer(
        self,
        team_id: str,
        from_user: str,
        to_user: str,
        agents: int = 0,
        compute_hours: float = 0.0,
        idempotency_key: str | None = None,
    ) -> TransferReceipt:
        """Move allocation between two capped members; see :meth:`TeamBook.transfer`."""
        if idempotency_key is not None:
            check_id(idempotency_key, "idempotencyKey")
        return self._state.teams.transfer(
            team_id, from_user, to_user, agents, compute_hours, idempotency_key, self._starts()
        )

    def team_status(self, team_id: str) -> TeamQuotaStatus:
        """The API's ``TeamQuotaStatus`` for this month."""
        return self._state.teams.status(team_id, self._starts())

    # -- orgs ------------------------------------------------------------------------------

    def create_org(
        self,
        org_id: str,
        name: str = "",
        parent_id: str | None = None,
        agents: int = 0,
        compute_hours: float = 0.0,
        storage_gb: float = 0.0,
    ) -> Organization:
        """Add an org to the tree; see :meth:`OrgTree.create`."""
        starts = self._starts()
        return self._state.orgs.create(
            org_id, name, parent_id, agents, compute_hours, storage_gb, starts
        )

    def patch_org(
        self,
        org_id: str,
        agents: int | None = None,
        compute_hours: float | None = None,
        storage_gb: float | None = None,
    ) -> Organization:
        """Change an org's caps, validated against the whole tree; see :meth:`OrgTree.patch`."""
        return self._state.orgs.patch(org_id, agents, compute_hours, storage_gb, self._starts())

    def governing_orgs(self, kind: str, entity_id: str) -> list[str]:
        """The org a user, team or org belongs to, then each ancestor up to the root.

        Managers of any org in the list govern the entity (tenancy checks of the API).

        Args:
            kind: ``user``, ``team`` or ``org``.
            entity_id: Its id.

        Returns:
            Org ids, nearest first; empty for a user or team in no org (or a user never seen).

        Raises:
            InvalidInput: An unknown kind, team or org.
        """
        if kind == "user":
            account = self._state.users.get(entity_id)
            org_id = None if account is None else account.org_id
        elif kind == "team":
            org_id = self._state.teams.get(entity_id).org_id
        elif kind == "org":
            org_id = entity_id
        else:
            raise InvalidInput(f"unknown kind {kind!r}", field="kind")
        return [] if org_id is None else [o.org_id for o in self._state.orgs.chain(org_id)]

    def organization(self, org_id: str) -> Organization:
        """The API's ``Organization`` with this month's subtree usage."""
        return self._state.orgs.get(org_id).view(self._starts())

    def hierarchy(self, org_id: str) -> OrganizationHierarchy:
        """The API's ``OrganizationHierarchy`` (ancestors root first)."""
        return self._state.orgs.hierarchy(org_id, self._starts())

    # -- events ----------------------------------------------------------------------------

    def pending_events(self) -> list[dict[str, Any]]:
        """Undelivered webhook payloads, oldest first, without removing them."""
        return [copy.deepcopy(e) for e in self._state.events.values()]

    def drain_events(self) -> list[dict[str, Any]]:
        """Take every undelivered webhook payload, oldest first."""
        return self._state.drain_events()

    # -- persistence -----------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The full state as JSON-ready dicts, ``{kind: {key: data}}``."""
        return self._state.snapshot()

    @classmethod
    def restore(
        cls, snapshot: Snapshot, clock: Clock, settings: QuotaSettings | None = None
    ) -> QuotaLedger:
        """Rebuild a ledger from :meth:`snapshot` output (or the rows of a store).

        Raises:
            InvalidInput: The snapshot is of an unknown version or its org tree is broken.
        """
        ledger = cls(clock, settings)
        ledger._state = LedgerState.from_snapshot(snapshot)
        return ledger

    def pop_changes(self) -> ChangeSet:
        """The rows changed since the last call (upserts and deletes), then forget them."""
        return self._state.pop_changes()

    # -- internals -------------------------------------------------------------------------

    def _starts(self) -> WindowStarts:
        self._last_starts = WindowStarts.at(utc_now_from(self._clock), self._last_starts)
        return self._last_starts

    def _account(self, user_id: str, tier: Tier, starts: WindowStarts) -> UserAccount:
        account = self._state.users.get(user_id)
        if account is None:
            account = self._state.users[user_id] = UserAccount.new(user_id, tier, starts)
            self._state.changed.add(("user", user_id))
        return account

    def _limits_of(self, user_id: str, tier: Tier | None) -> UserLimits:
        account = self._state.users.get(user_id)
        if account is None:
            return self._defaults[parse_tier(tier or "user")]
        return account.limits(self._defaults, None if tier is None else parse_tier(tier))

    def _open_reservation(self, reservation_id: str) -> Reservation:
        res = self._state.open.get(reservation_id)
        if res is None:
            raise InvalidInput(
                f"reservation {reservation_id!r} does not exist",
                {"reservationId": reservation_id},
                field="reservationId",
            )
        return res

    def _open_token_hold(self, hold_id: str) -> TokenHold:
        hold = self._state.token_holds.get(hold_id)
        if hold is None:
            raise InvalidInput(
                f"token hold {hold_id!r} does not exist", {"holdId": hold_id}, field="holdId"
            )
        return hold

    def _settle(
        self,
        res: Reservation,
        agent_calls: int,
        compute: int,
        released: bool,
        starts: WindowStarts,
    ) -> Settlement:
        account = self._state.users[res.user_id]
        counters = reservation_counters(res, account, self._state.teams, self._state.orgs, starts)
        for counter, start in counters:
            counter.settle(start, (res.agents, res.compute_micro), (agent_calls, compute))
        account.concurrent = max(0, account.concurrent - res.concurrent_agents)
        settlement = Settlement(
            reservation_id=res.reservation_id,
            task_id=res.task_id,
            user_id=res.user_id,
            agents_reserved=res.agents,
            agent_calls=agent_calls,
            compute_micro=compute,
            released=released,
            settled_at=starts.now,
        )
        del self._state.open[res.reservation_id]
        self._state.open_by_task.pop(res.task_id, None)
        self._state.settled[res.reservation_id] = settlement
        self._state.touch(res)
        self._state.changed.add(("reservation", res.reservation_id))
        if agent_calls or compute:
            self._announce(account, starts)
        return settlement

    def _announce(self, account: UserAccount, starts: WindowStarts) -> None:
        limits = account.limits(self._defaults)
        fired = mark_crossed_thresholds(account, limits, starts, self._settings.alert_thresholds)
        if not fired:
            return
        usage = account.status(limits, starts, self._state.tokens_held.get(account.user_id, 0))
        for period, threshold in fired:
            self._state.add_event(
                alert_event(account.user_id, threshold, period, usage, starts.now)
            )
