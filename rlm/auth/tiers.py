"""Rate-limit tiers, exactly as the API document's "Rate Limits" table.

========== ============ ============= =================
Tier       Requests/Min Requests/Hour Concurrent Agents
========== ============ ============= =================
anonymous  10           100           0
user       60           1,000         5
power_user 120          5,000         20
admin      300          20,000        100
enterprise 600          50,000        500
========== ============ ============= =================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal, TypeGuard, get_args

__all__ = ["DEFAULT_TIER", "TIERS", "Tier", "TierLimits", "is_tier"]

Tier = Literal["anonymous", "user", "power_user", "admin", "enterprise"]
"""The name of a rate-limit tier (the ``tier`` claim of a token)."""

DEFAULT_TIER: Final[Tier] = "user"
"""The tier of a token that carries no ``tier`` claim."""


@dataclass(frozen=True, slots=True)
class TierLimits:
    """The limits of one tier.

    Attributes:
        requests_per_minute: Requests admitted in any 60 s window.
        requests_per_hour: Requests admitted in any 3600 s window.
        concurrent_agents: Agents a principal may hold at once.
    """

    requests_per_minute: int
    requests_per_hour: int
    concurrent_agents: int

    def __post_init__(self) -> None:
        for name in ("requests_per_minute", "requests_per_hour", "concurrent_agents"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")


TIERS: Final[Mapping[str, TierLimits]] = MappingProxyType(
    {
        "anonymous": TierLimits(10, 100, 0),
        "user": TierLimits(60, 1_000, 5),
        "power_user": TierLimits(120, 5_000, 20),
        "admin": TierLimits(300, 20_000, 100),
        "enterprise": TierLimits(600, 50_000, 500),
    }
)
"""Limits by tier name (read-only)."""

_TIER_NAMES: Final[frozenset[str]] = frozenset(get_args(Tier))


def is_tier(value: object) -> TypeGuard[Tier]:
    """Whether ``value`` names a tier.

    Args:
        value: Anything, e.g. a raw token claim.

    Returns:
        True for one of the five tier names.
    """
    return isinstance(value, str) and value in _TIER_NAMES
