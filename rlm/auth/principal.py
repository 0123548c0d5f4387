"""Who is calling: the authenticated (or anonymous) principal of a request."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from rlm.auth.tiers import TIERS, Tier, TierLimits
from rlm.errors import Forbidden, Unauthorized

__all__ = ["ANONYMOUS_PREFIX", "Principal"]

ANONYMOUS_PREFIX: Final = "anonymous:"
"""Prefix of the ``user_id`` of anonymous principals; tokens may not use it as ``sub``."""


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of a request, as established by its token (or the lack of one).

    A principal is a plain, picklable value: it travels from the HTTP layer into actors.

    Attributes:
        user_id: The token's ``sub``; ``"anonymous:<client>"`` for anonymous callers.
        scopes: The scopes granted, implied scopes included.
        tier: The rate-limit tier.
        team: The team the usage is also charged to, if any.
        org: The organisation the usage is also charged to, if any.
        token_id: The token's ``jti``; ``None`` for anonymous callers or tokens without one.
    """

    user_id: str
    scopes: frozenset[str] = field(default_factory=frozenset)
    tier: Tier = "user"
    team: str | None = None
    org: str | None = None
    token_id: str | None = None

    @classmethod
    def anonymous(cls, client_key: str) -> Principal:
        """A caller without a token, identified by its client address.

        Args:
            client_key: The client address (or another stable key for the caller).

        Returns:
            A principal of tier ``anonymous`` with no scopes.
        """
        return cls(user_id=f"{ANONYMOUS_PREFIX}{client_key}", scopes=frozenset(), tier="anonymous")

    @property
    def is_anonymous(self) -> bool:
        """Whether the caller presented no token."""
        return self.token_id is None and self.user_id.startswith(ANONYMOUS_PREFIX)

    @property
    def rate_limit_key(self) -> str:
        """The key the rate limiter counts under (user id, or client address if anonymous).

        Token subjects can never start with ``anonymous:`` (the verifier refuses them), so an
        anonymous client cannot share a counter with a user.
        """
        return self.user_id

    @property
    def limits(self) -> TierLimits:
        """The limits of this principal's tier."""
        return TIERS[self.tier]

    def has_scope(self, scope: str) -> bool:
        """Whether the principal was granted ``scope``.

        Args:
            scope: A scope name, e.g. ``rlm:execute``.

        Returns:
            True when granted (directly or implied, see :mod:`rlm.auth.scopes`).
        """
        return scope in self.scopes

    def require_scope(self, scope: str) -> None:
        """Refuse the request unless the principal holds ``scope``.

        Args:
            scope: The scope the action needs.

        Raises:
            Unauthorized: The caller is anonymous: presenting a token could help (401).
            Forbidden: The caller's token lacks the scope (403).
        """
        if self.has_scope(scope):
            return
        details = {"requiredScope": scope}
        if self.is_anonymous:
            raise Unauthorized(f"authentication required (scope {scope!r})", details)
        raise Forbidden(f"the token lacks the scope {scope!r}", details)
