"""Tokens this process verified lately: the same bearer token is checked once, not on every
request.

A client sends its token with every request; verifying it (an HMAC or RSA/ECDSA signature,
then the claims) is the largest piece of a small request's work in the replica. A
:class:`VerifiedTokens` keeps each token it verified, keyed by a hash of it (the cache never
holds a token), until the moment verification would start refusing it — its ``exp`` plus the
configured leeway — and at most ``ttl_s``, so a key withdrawn from a JWKS document stops being
accepted within that time (``ttl_s`` 0: every request is verified). Refusals are never kept:
a bad token is verified, and refused, every time.

One cache belongs to one set of verification keys and settings (an app builds both once).
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable

from rlm.auth.keys import KeySet
from rlm.auth.principal import Principal
from rlm.auth.settings import AuthSettings
from rlm.auth.tokens import verify_token_claims_async

__all__ = ["VerifiedTokens"]


class VerifiedTokens:
    """Principals of recently verified tokens, each until its token would be refused.

    Args:
        keys: The verification keys every token of this cache is checked against.
        settings: Issuer, audience, algorithms and leeway.
        ttl_s: The longest a verification is reused (a JWKS key withdrawn meanwhile is
            still accepted for that long).
        max_tokens: Tokens kept; the least recently used is dropped first.
        clock: Unix time in seconds (the same clock as the tokens' ``exp``).
    """

    def __init__(
        self,
        keys: KeySet,
        settings: AuthSettings,
        *,
        ttl_s: float = 60.0,
        max_tokens: int = 4096,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = keys
        self._settings = settings
        self._ttl = ttl_s
        self._max = max_tokens
        self._clock = clock
        self._entries: OrderedDict[bytes, tuple[Principal, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def principal(self, token: str) -> Principal:
        """Who ``token`` speaks for: verified now, or moments ago.

        Raises:
            Unauthorized: as :func:`~rlm.auth.tokens.verify_token_async` (never cached).
        """
        digest = hashlib.blake2b(token.encode(), digest_size=20).digest()
        now = self._clock()
        hit = self._entries.get(digest) if self._ttl > 0 else None
        if hit is not None:
            if now < hit[1]:
                self._entries.move_to_end(digest)
                return hit[0]
            del self._entries[digest]
        principal, claims = await verify_token_claims_async(token, self._keys, self._settings)
        # ``exp`` is a required claim, checked to be a number by the verification.
        until = min(now + self._ttl, float(claims["exp"]) + self._settings.leeway_s)
        if self._ttl > 0 and until > now:
            self._entries[digest] = (principal, until)
            if len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return principal
