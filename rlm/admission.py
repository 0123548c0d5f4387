"""Who is asking, and under which limits: what the engine checks before it does anything.

A request from the HTTP API carries an :class:`Admission` (the caller's rate-limit key and tier
limits) and a :class:`Viewer` (whose tasks the caller may see). Python callers of the engine
pass neither: they are trusted, like a ``ray job``.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlm.auth.tiers import Tier, TierLimits

__all__ = ["Admission", "Viewer"]


@dataclass(frozen=True, slots=True)
class Admission:
    """The rate-limit key and tier limits of one request, and whose quotas it draws on.

    ``rate_counted``: the request was already counted against the rate limits (a front end
    that admits before it does anything costly, as ``POST /execute`` does); the engine then
    only leases its agents and holds its quotas.
    """

    key: str
    limits: TierLimits
    user_id: str | None = None
    tier: Tier = "user"
    team_id: str | None = None
    org_id: str | None = None
    rate_counted: bool = False


@dataclass(frozen=True, slots=True)
class Viewer:
    """Whose tasks a caller may see: its own, and its org's when it is an admin."""

    user_id: str
    org_id: str | None = None
    admin: bool = False

    def may_see(self, owner_id: str, org_id: str | None) -> bool:
        """Whether a task of ``owner_id`` in ``org_id`` is visible to this viewer."""
        if owner_id == self.user_id:
            return True
        return self.admin and self.org_id is not None and org_id == self.org_id
