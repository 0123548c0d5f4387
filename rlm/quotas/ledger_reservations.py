"""The ledger's agent reservations: admission, reconciliation, release and the reaper.

:meth:`LedgerReservations.reserve` holds a task's planned agent calls on every level at once
(see :func:`~rlm.quotas.admission.plan_admission`) or on none; settling replaces the hold with
actual usage exactly once and fires the user's threshold alerts.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from rlm.errors import InvalidInput, QuotaExceeded
from rlm.models.quotas import AllocationDecision
from rlm.quotas.accounts import UserAccount
from rlm.quotas.admission import (
    AdmissionPlan,
    AdmissionRequest,
    plan_admission,
    reservation_counters,
)
from rlm.quotas.alerts import (
    alert_event,
    crossed_thresholds,
    mark_crossed_thresholds,
    org_alert_event,
    team_alert_event,
)
from rlm.quotas.counters import to_micro
from rlm.quotas.ids import random_hex
from rlm.quotas.inputs import check_count, check_id
from rlm.quotas.ledger_core import LedgerCore
from rlm.quotas.records import Reservation, Settlement
from rlm.quotas.settings import Tier
from rlm.quotas.usage import charged_levels
from rlm.quotas.windows import WindowStarts

__all__ = ["LedgerReservations"]


class LedgerReservations(LedgerCore):
    """Agent reservations: the admission part of :class:`~rlm.quotas.ledger.QuotaLedger`."""

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
        extends: str | None = None,
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
            extends: The taskId of a running task these calls belong to (calls its plan did
                not count): they take no concurrency lease, the task holds its own.

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
        if extends is not None:
            check_id(extends, "extends")
            request = replace(request, concurrent_agents=0)
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
        self._take_holds(plan, request, scale=1)
        res = self._open(task_id, request, plan.org_ids, starts.now)
        self._state.touch(res)
        return res

    def _take_holds(self, plan: AdmissionPlan, request: AdmissionRequest, *, scale: int) -> None:
        """Apply ``plan`` for ``scale`` calls of ``request``: hold on every counter of the
        payer chain, record the account (new, tier, org) and take the concurrency lease."""
        for hold in plan.holds:
            hold.counter.hold(hold.start, request.agents * scale, request.compute * scale)
        account = plan.account
        if plan.is_new:
            self._state.users[request.user_id] = account
        account.tier = request.tier
        if plan.org_ids and account.org_id is None:
            account.org_id = plan.org_ids[0]
        account.concurrent += request.concurrent_agents * scale

    def _open(
        self,
        task_id: str,
        request: AdmissionRequest,
        org_ids: tuple[str, ...],
        now: datetime,
    ) -> Reservation:
        """Make ``task_id``'s reservation of ``request`` and register it as open."""
        res = Reservation(
            reservation_id=f"res_{random_hex()}",
            task_id=task_id,
            user_id=request.user_id,
            agents=request.agents,
            compute_micro=request.compute,
            concurrent_agents=request.concurrent_agents,
            team_id=request.team_id,
            org_ids=org_ids,
            created_at=now,
        )
        self._state.open[res.reservation_id] = res
        self._state.open_by_task[task_id] = res.reservation_id
        self._state.changed.add(("reservation", res.reservation_id))
        return res

    def _close(
        self,
        res: Reservation,
        agent_calls: int,
        compute: int,
        *,
        released: bool,
        now: datetime,
    ) -> Settlement:
        """Record ``res``'s settlement and move it from open to settled (counters untouched)."""
        settlement = Settlement(
            reservation_id=res.reservation_id,
            task_id=res.task_id,
            user_id=res.user_id,
            agents_reserved=res.agents,
            agent_calls=agent_calls,
            compute_micro=compute,
            released=released,
            settled_at=now,
        )
        del self._state.open[res.reservation_id]
        self._state.open_by_task.pop(res.task_id, None)
        self._state.settled[res.reservation_id] = settlement
        self._state.changed.add(("reservation", res.reservation_id))
        return settlement

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

    def reservation(self, reservation_id: str) -> Reservation | None:
        """The open reservation ``reservation_id``, or ``None`` once settled or unknown."""
        return self._state.open.get(reservation_id)

    def open_reservations(self, user_id: str | None = None) -> list[Reservation]:
        """Open reservations (of ``user_id``, if given), oldest first."""
        found = [r for r in self._state.open.values() if user_id is None or r.user_id == user_id]
        return sorted(found, key=lambda r: r.created_at)

    def _open_reservation(self, reservation_id: str) -> Reservation:
        res = self._state.open.get(reservation_id)
        if res is None:
            raise InvalidInput(
                f"reservation {reservation_id!r} does not exist",
                {"reservationId": reservation_id},
                field="reservationId",
            )
        return res

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
        settlement = self._close(res, agent_calls, compute, released=released, now=starts.now)
        self._state.touch(res)
        if agent_calls or compute:
            self._state.usage.charge(
                charged_levels(res.user_id, res.team_id, res.org_ids),
                starts.now,
                agent_calls=agent_calls,
                compute_micro=compute,
            )
            self._announce(account, res, starts)
        return settlement

    def _announce(self, account: UserAccount, res: Reservation, starts: WindowStarts) -> None:
        """Queue the threshold events the settled usage newly reached: the user's windows,
        then (monthly) its team's pool and each org of its chain (their subtree's usage
        against their caps)."""
        thresholds = self._settings.alert_thresholds
        limits = account.limits(self._defaults)
        fired = mark_crossed_thresholds(account, limits, starts, thresholds)
        if fired:
            usage = account.status(limits, starts, self._state.tokens_held.get(account.user_id, 0))
            for period, threshold in fired:
                self._state.add_event(
                    alert_event(account.user_id, threshold, period, usage, starts.now)
                )
        month = starts.monthly
        if res.team_id is not None:
            team = self._state.teams.get(res.team_id)
            used, caps = team.usage.charged(month), (team.agent_pool, team.compute_pool)
            team.alerts, new = crossed_thresholds(team.alerts, month, used, caps, thresholds)
            for threshold in new:
                event = team_alert_event(
                    team.team_id, team.org_id, threshold, used, caps, starts.now
                )
                self._state.add_event(event)
            if new:
                self._state.changed.add(("team", team.team_id))
        for org_id in res.org_ids:
            org = self._state.orgs.get(org_id)
            used, caps = org.subtree.charged(month), (org.agents, org.compute)
            org.alerts, new = crossed_thresholds(org.alerts, month, used, caps, thresholds)
            for threshold in new:
                self._state.add_event(org_alert_event(org_id, threshold, used, caps, starts.now))
            if new:
                self._state.changed.add(("org", org_id))
