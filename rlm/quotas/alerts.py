"""``quota.threshold_exceeded`` events: fired once per threshold per window of a user.

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
from rlm.quotas.windows import PERIODS, Period, WindowStarts, iso_z

__all__ = ["THRESHOLD_EVENT", "alert_event", "mark_crossed_thresholds"]

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
        agents_limit = limits.agents(period)
        compute_limit = limits.compute(period, starts.month_days)
        lowest = thresholds[0] if thresholds else 0
        if not (
            (agents_limit > 0 and agents * 100 >= lowest * agents_limit)
            or (compute_limit > 0 and compute * 100 >= lowest * compute_limit)
        ):
            continue  # below every threshold: the common case, decided without allocating
        marked_start, marked = account.alerts.get(period, (start, []))
        seen = list(marked) if marked_start >= start else []
        for threshold in thresholds:
            if threshold in seen:
                continue
            # Integer cross-multiplication: no float rounding at exactly 80 %.
            reached = (agents_limit > 0 and agents * 100 >= threshold * agents_limit) or (
                compute_limit > 0 and compute * 100 >= threshold * compute_limit
            )
            if reached:
                seen.append(threshold)
                fired.append((period, threshold))
        if seen:
            account.alerts[period] = (max(start, marked_start), seen)
    return fired


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
