"""``quota.threshold_exceeded`` events: fired once per threshold per window of a user, and once
per threshold per month of a team's pool and of an org's caps (its whole subtree's usage).

A window's fill is measured on *charged* usage (reconciled tasks), not on reservations, so a
reservation that is later released never raises an alarm. The fill is the larger of the
agent-call and compute fractions; a window whose limit is 0 starts exceeded and never "crosses".
The payload follows the API document's Quota Alert Webhook.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from rlm.models.quotas import UserQuotaStatus
from rlm.quotas.accounts import UserAccount, UserLimits
from rlm.quotas.counters import from_micro
from rlm.quotas.windows import PERIODS, Period, WindowStarts, iso_z

__all__ = [
    "Marks",
    "THRESHOLD_EVENT",
    "alert_event",
    "crossed_thresholds",
    "mark_crossed_thresholds",
    "org_alert_event",
    "team_alert_event",
]

#: The thresholds already announced in one window, and that window's start.
Marks = tuple[datetime, list[int]]

THRESHOLD_EVENT = "quota.threshold_exceeded"


def mark_crossed_thresholds(
    account: UserAccount, limits: UserLimits, starts: WindowStarts, thresholds: Sequence[int]
) -> list[tuple[Period, int]]:
    """Record and return the ``(period, threshold)`` pairs newly reached by ``account``.

    Marks live per window: when a window rolls over, its thresholds can fire again.

    Args:
        account: The user; its ``alerts`` marks are updated in place.
        limits: The user's effective limits.
        starts: The current window starts.
        thresholds: Percentages, increasing.

    Returns:
        Pairs not announced before in the current window, in period then threshold order.
    """
    fired: list[tuple[Period, int]] = []
    for period in PERIODS:
        start = starts.start(period)
        agents, compute = account.windows[period].charged(start)
        marks, new = crossed_thresholds(
            account.alerts.get(period),
            start,
            (agents, compute),
            (limits.agents(period), limits.compute(period, starts.month_days)),
            thresholds,
        )
        if marks is not None:
            account.alerts[period] = marks
        for threshold in new:
            fired.append((period, threshold))
    return fired


def crossed_thresholds(
    marks: Marks | None,
    start: datetime,
    used: tuple[int, int],
    limits: tuple[int, int],
    thresholds: Sequence[int],
) -> tuple[Marks | None, list[int]]:
    """The thresholds of one window newly reached.

    Args:
        marks: What was announced before (in this window or an earlier one), if anything.
        start: The current window's start.
        used: Agent calls and micro-hours charged in the window.
        limits: The window's agent-call and micro-hour limits (``0``: no crossing).
        thresholds: Percentages, increasing.

    Returns:
        The marks to keep (``marks`` itself when nothing was reached) and the thresholds
        newly reached, in order.
    """
    (agents, compute), (agents_limit, compute_limit) = used, limits
    lowest = thresholds[0] if thresholds else 0
    if not (
        (agents_limit > 0 and agents * 100 >= lowest * agents_limit)
        or (compute_limit > 0 and compute * 100 >= lowest * compute_limit)
    ):
        return marks, []  # below every threshold: the common case, decided without allocating
    marked_start, marked = marks if marks is not None else (start, [])
    seen = list(marked) if marked_start >= start else []
    fired: list[int] = []
    for threshold in thresholds:
        if threshold in seen:
            continue
        # Integer cross-multiplication: no float rounding at exactly 80 %.
        reached = (agents_limit > 0 and agents * 100 >= threshold * agents_limit) or (
            compute_limit > 0 and compute * 100 >= threshold * compute_limit
        )
        if reached:
            seen.append(threshold)
            fired.append(threshold)
    if not seen:
        return marks, []
    return (max(start, marked_start), seen), fired


def alert_event(
    user_id: str, threshold: int, period: Period, usage: UserQuotaStatus, at: datetime
) -> dict[str, Any]:
    """The webhook payload announcing that ``user_id`` reached ``threshold`` % of ``period``."""
    return {
        "event": THRESHOLD_EVENT,
        "timestamp": iso_z(at),
        "data": {
            "userId": user_id,
            "threshold": threshold,
            "period": period,
            "usage": usage.to_wire(),
        },
    }


def _pool_usage(used: tuple[int, int], limits: tuple[int, int]) -> dict[str, Any]:
    return {
        "agentsUsed": used[0],
        "agentsTotal": limits[0],
        "computeUsed": from_micro(used[1]),
        "computeTotal": from_micro(limits[1]),
    }


def team_alert_event(
    team_id: str,
    org_id: str | None,
    threshold: int,
    used: tuple[int, int],
    limits: tuple[int, int],
    at: datetime,
) -> dict[str, Any]:
    """The payload announcing that team ``team_id``'s pool reached ``threshold`` % this month
    (``usage``: charged agent calls and compute hours against the pool)."""
    data: dict[str, Any] = {"teamId": team_id, "threshold": threshold, "period": "monthly"}
    if org_id is not None:
        data["orgId"] = org_id
    data["usage"] = _pool_usage(used, limits)
    return {"event": THRESHOLD_EVENT, "timestamp": iso_z(at), "data": data}


def org_alert_event(
    org_id: str, threshold: int, used: tuple[int, int], limits: tuple[int, int], at: datetime
) -> dict[str, Any]:
    """The payload announcing that org ``org_id``'s caps reached ``threshold`` % this month
    (``usage``: its whole subtree's charged usage against its caps)."""
    return {
        "event": THRESHOLD_EVENT,
        "timestamp": iso_z(at),
        "data": {
            "orgId": org_id,
            "threshold": threshold,
            "period": "monthly",
            "usage": _pool_usage(used, limits),
        },
    }
