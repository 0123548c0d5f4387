"""Batches of admission calls: applied at one instant, runs of alike calls as one.

A front end that gathers admissions sends the accountant a batch of calls (see
:meth:`~rlm.quotas.service.QuotaLedgerService.batch`). Applied one by one, each reservation
plans and holds on every counter of its payer chain (three user windows, the member, the team,
each org) and each settlement settles, charges usage buckets on and checks alert thresholds of
all of them: the batch costs O(calls * levels). Here a *run* — consecutive reserves that differ
only in their task id, or consecutive reconciles of open reservations with one payer chain —
is applied as one aggregated hold (or settlement) per counter, O(levels), and then each call's
own record (its reservation or settlement) is made:

- a run of ``k`` reserves is admitted when the request scaled by ``k`` fits every level (each
  check is monotone in the amount held, so the sum fits exactly when each call, applied in
  turn, fits); otherwise the run is applied one by one, and the calls before the first refusal
  are admitted as they would be alone;
- a run of reconciles is settled at once when no counter would be clamped at zero and no alert
  threshold would newly fire (usage only grows within a run, so if the run's total crosses
  none, no call in between does); otherwise one by one, so every event carries the usage of
  its own moment.

Either way the ledger ends in the same state, answers the same values (ids are drawn in the
same order) and queues the same events and usage as the calls applied one at a time at the
batch's instant: the property test ``tests/unit/test_quota_batch_aggregate.py`` holds the two
paths to that. The whole batch reads the clock once, so its calls share one instant.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from rlm.errors import InvalidInput, RLMError
from rlm.quotas.accounts import UserAccount
from rlm.quotas.admission import AdmissionRequest, plan_admission, reservation_counters
from rlm.quotas.alerts import crossed_thresholds
from rlm.quotas.counters import WindowCounter, to_micro
from rlm.quotas.inputs import check_count, check_id
from rlm.quotas.ledger_reservations import LedgerReservations
from rlm.quotas.records import Reservation
from rlm.quotas.usage import charged_levels
from rlm.quotas.windows import PERIODS, WindowStarts

__all__ = ["BATCHABLE", "LedgerBatch", "check_batchable"]

#: The methods a batch may call: admission's hot path (agent reservations and language-model
#: token holds) and its reads.
BATCHABLE = frozenset(
    {
        "reserve",
        "reconcile",
        "release",
        "reserve_tokens",
        "settle_tokens",
        "release_tokens",
        "check",
        "user_status",
        "user_config",
    }
)


def check_batchable(calls: Sequence[tuple[str, Sequence[Any], dict[str, Any]]]) -> None:
    """Refuse a batch naming a method outside :data:`BATCHABLE`.

    Raises:
        InvalidInput: Naming the first such call.
    """
    for i, (method, _, _) in enumerate(calls):
        if method not in BATCHABLE:
            raise InvalidInput(
                f"{method!r} cannot be batched; one of {sorted(BATCHABLE)}",
                field=f"calls[{i}].method",
            )


def _reserve_args(
    user_id: str,
    agents: int,
    *,
    tier: str,
    task_id: str,
    team_id: str | None = None,
    org_id: str | None = None,
    concurrent_agents: int = 1,
    compute_hours: float = 0.0,
) -> tuple[str, int, str, str, str | None, str | None, int, float]:
    # The arguments of ``reserve`` a run may aggregate (``extends`` goes one by one).
    return user_id, agents, tier, task_id, team_id, org_id, concurrent_agents, compute_hours


def _reconcile_args(
    reservation_id: str, actual_agent_calls: int, compute_hours: float = 0.0
) -> tuple[str, int, float]:
    return reservation_id, actual_agent_calls, compute_hours


def _typed(value: Any) -> tuple[type, Any]:
    # 1, 1.0 and True are equal keys but not equal arguments: the type keeps them apart.
    return type(value), value


class LedgerBatch(LedgerReservations):
    """Batches of admission calls: the batching part of :class:`~rlm.quotas.ledger.QuotaLedger`."""

    def apply_batch(
        self, calls: Sequence[tuple[str, Sequence[Any], dict[str, Any]]], *, aggregate: bool = True
    ) -> list[Any]:
        """Apply ``calls`` in order at one instant; each answers as it would alone.

        Args:
            calls: ``(method, args, kwargs)`` with ``method`` in :data:`BATCHABLE`.
            aggregate: Apply runs of alike reserves and reconciles as one (see the module
                docstring); ``False`` applies every call on its own (same result, slower).

        Returns:
            One outcome per call: its value, or the :class:`~rlm.errors.RLMError` it raised
            (a refusal does not undo the other calls).

        Raises:
            InvalidInput: A call names a method outside :data:`BATCHABLE` (nothing applied).
        """
        check_batchable(calls)
        self._pinned = starts = self._starts()
        try:
            outcomes: list[Any] = []
            keys = [self._run_key(call) if aggregate else None for call in calls]
            i = 0
            while i < len(calls):
                j = i + 1
                if keys[i] is not None:
                    while j < len(calls) and keys[j] == keys[i]:
                        j += 1
                run = calls[i:j]
                done = None
                if len(run) > 1:
                    if run[0][0] == "reserve":
                        done = self._reserve_run(run, starts)
                    else:
                        done = self._reconcile_run(run, starts)
                if done is None:
                    done = [self._apply_one(*call) for call in run]
                outcomes.extend(done)
                i = j
            return outcomes
        finally:
            self._pinned = None

    def _apply_one(self, method: str, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        try:
            return getattr(self, method)(*args, **kwargs)
        except RLMError as err:
            return err
        except TypeError as err:  # the caller's arguments do not fit the method
            return InvalidInput(f"{method}: {err}", field="calls")

    def _run_key(self, call: tuple[str, Sequence[Any], dict[str, Any]]) -> object:
        """What a call must share with its neighbours to join their run; ``None``: alone."""
        method, args, kwargs = call
        try:
            if method == "reserve":
                bound = _reserve_args(*args, **kwargs)
                # Everything but the task id (index 3).
                return ("reserve", *(_typed(v) for v in bound[:3] + bound[4:]))
            if method == "reconcile":
                res = self._state.open.get(_reconcile_args(*args, **kwargs)[0])
                if res is None:  # settled, unknown or malformed: its own answer, alone
                    return None
                return "reconcile", res.user_id, res.team_id, res.org_ids
        except TypeError:
            return None
        return None

    def _reserve_run(
        self, run: Sequence[tuple[str, Sequence[Any], dict[str, Any]]], starts: WindowStarts
    ) -> list[Any] | None:
        """Admit ``run`` (reserves alike but for their task ids) as one hold per counter, or
        ``None`` when it must go one by one (nothing changed then)."""
        bound = [_reserve_args(*args, **kwargs) for _, args, kwargs in run]
        user_id, agents, tier, _, team_id, org_id, concurrent, hours = bound[0]
        task_ids = [b[3] for b in bound]
        try:
            for task_id in task_ids:
                check_id(task_id, "taskId")
            request = AdmissionRequest.parse(
                user_id, agents, tier, team_id, org_id, concurrent, hours
            )
            if request.team_id is None:
                request = replace(request, team_id=self._state.teams.team_of(request.user_id))
        except RLMError:
            return None
        if len(set(task_ids)) < len(task_ids) or any(
            t in self._state.open_by_task for t in task_ids
        ):
            return None  # a retry among them answers its open reservation: one by one
        k = len(run)
        total = replace(
            request,
            agents=request.agents * k,
            compute=request.compute * k,
            concurrent_agents=request.concurrent_agents * k,
        )
        try:
            plan = plan_admission(
                total,
                self._state.users.get(request.user_id),
                self._defaults,
                self._state.teams,
                self._state.orgs,
                starts,
            )
        except RLMError:
            return None  # some call would be refused: one by one finds which
        self._take_holds(plan, request, scale=k)
        made: list[Any] = [self._open(t, request, plan.org_ids, starts.now) for t in task_ids]
        self._state.touch(made[0])  # one payer chain: the same entities for every call
        return made

    def _reconcile_run(
        self, run: Sequence[tuple[str, Sequence[Any], dict[str, Any]]], starts: WindowStarts
    ) -> list[Any] | None:
        """Settle ``run`` (open reservations of one payer chain) as one settlement per
        counter, or ``None`` when it must go one by one (nothing changed then)."""
        items: list[tuple[Reservation, int, int]] = []
        seen: set[str] = set()
        try:
            for _, args, kwargs in run:
                rid, calls, hours = _reconcile_args(*args, **kwargs)
                res = self._state.open.get(rid)
                if res is None or rid in seen:
                    return None  # settled earlier in the run: its repeat answers alone
                seen.add(rid)
                items.append(
                    (res, check_count(calls, "agentCalls"), to_micro(hours, field="computeHours"))
                )
        except RLMError:
            return None
        first = items[0][0]
        account = self._state.users[first.user_id]
        try:
            counters = reservation_counters(
                first, account, self._state.teams, self._state.orgs, starts
            )
        except RLMError:
            return None
        held = (sum(r.agents for r, _, _ in items), sum(r.compute_micro for r, _, _ in items))
        used = (sum(a for _, a, _ in items), sum(c for _, _, c in items))
        lease = sum(r.concurrent_agents for r, _, _ in items)
        # One by one, each settle clamps at zero; the sum is exact only if none would.
        if account.concurrent < lease or any(
            c.agents_reserved < held[0] or c.compute_reserved < held[1] for c, _ in counters
        ):
            return None
        if (used[0] or used[1]) and self._would_alert(account, first, used, starts):
            return None
        for counter, start in counters:
            counter.settle(start, held, used)
        account.concurrent -= lease
        made: list[Any] = [
            self._close(res, agent_calls, compute, released=False, now=starts.now)
            for res, agent_calls, compute in items
        ]
        self._state.touch(first)
        if used[0] or used[1]:
            self._state.usage.charge(
                charged_levels(first.user_id, first.team_id, first.org_ids),
                starts.now,
                agent_calls=used[0],
                compute_micro=used[1],
            )
            # Fires nothing (checked above); records the windows' marks as the last call would.
            self._announce(account, first, starts)
        return made

    def _would_alert(
        self, account: UserAccount, res: Reservation, used: tuple[int, int], starts: WindowStarts
    ) -> bool:
        """Whether charging ``used`` more to ``res``'s payer chain newly reaches a threshold
        (the checks :meth:`_announce` makes, on the amounts after the charge, changing
        nothing)."""
        thresholds = self._settings.alert_thresholds
        limits = account.limits(self._defaults)
        for period in PERIODS:
            start = starts.start(period)
            after = _after(account.windows[period], start, used)
            caps = (limits.agents(period), limits.compute(period, starts.month_days))
            if crossed_thresholds(account.alerts.get(period), start, after, caps, thresholds)[1]:
                return True
        month = starts.monthly
        if res.team_id is not None:
            team = self._state.teams.get(res.team_id)
            after = _after(team.usage, month, used)
            caps = (team.agent_pool, team.compute_pool)
            if crossed_thresholds(team.alerts, month, after, caps, thresholds)[1]:
                return True
        for org_id in res.org_ids:
            org = self._state.orgs.get(org_id)
            after = _after(org.subtree, month, used)
            caps = (org.agents, org.compute)
            if crossed_thresholds(org.alerts, month, after, caps, thresholds)[1]:
                return True
        return False


def _after(counter: WindowCounter, start: Any, used: tuple[int, int]) -> tuple[int, int]:
    # What ``counter`` will have charged in the window at ``start`` once ``used`` is settled
    # (``charged`` reads a window the counter has not rolled into yet as empty, as settle would).
    agents, compute = counter.charged(start)
    return agents + used[0], compute + used[1]
