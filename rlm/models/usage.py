"""Usage over time (extension): ``GET /quotas/{user|team|enterprise/org}/{id}/usage``."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from rlm.models.base import WireModel

__all__ = ["UsageHistory", "UsagePoint"]


class UsagePoint(WireModel):
    """What was charged in one bucket of time (``start`` up to the next bucket's).

    Names as in :class:`~rlm.models.quotas.QuotaPeriod`: agent calls and compute hours settled
    by tasks, language-model tokens (input + output) and cost settled by their calls.
    """

    start: datetime
    agents_used: int
    compute_hours_used: float
    tokens_used: int
    cost_usd: float


class UsageHistory(WireModel):
    """A user's, team's or org's usage in the current ``period`` window, bucket by bucket.

    ``start``/``resetTime`` bound the window as :class:`~rlm.models.quotas.QuotaPeriod` does;
    ``buckets`` cover it from its start to the bucket containing now, empty ones included;
    ``total`` adds them up. An org's usage is its whole subtree's, as its quota counts it.
    """

    level: Literal["user", "team", "org"]
    id: str
    period: Literal["daily", "weekly", "monthly"]
    bucket: Literal["hour", "day"]
    start: datetime
    reset_time: datetime
    buckets: list[UsagePoint]
    total: UsagePoint
