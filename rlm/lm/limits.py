"""A provider's limits: fair concurrency slots and a requests/tokens-per-minute pacer.

Both live in the provider's gateway (one per provider, so they hold across every task, Serve
replica and node) and run on its event loop; neither imports Ray.

- :class:`FairSlots` caps requests in flight (``max_concurrency``) and each tenant's
  (``max_inflight_per_tenant``); when slots are short, waiting tenants are served round-robin,
  so one tenant's fan-out of a thousand calls cannot starve another's single call.
- :class:`RatePacer` holds requests back until sending one more keeps every 60-second window
  within ``requests_per_minute`` and ``tokens_per_minute`` (tokens counted as the worst case:
  the prompt estimate plus ``max_tokens``, as providers count them against the limit).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from rlm.errors import InvalidInput
from rlm.ratelimit.window import SlidingWindow

__all__ = ["FairSlots", "RatePacer"]


class FairSlots:
    """Concurrency slots shared fairly by tenants.

    Args:
        capacity: Requests in flight at once.
        per_tenant: Requests one tenant may have in flight (``None``: only ``capacity``).
    """

    def __init__(self, capacity: int, per_tenant: int | None = None) -> None:
        if capacity < 1 or (per_tenant is not None and per_tenant < 1):
            raise ValueError("capacity and per_tenant must be >= 1")
        self._capacity = capacity
        self._per_tenant = per_tenant or capacity
        self._inflight = 0
        self._by_tenant: dict[str, int] = {}
        # Tenants with waiters, in the order they are served next (round-robin).
        self._waiting: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()
        self.max_inflight = 0
        self.max_by_tenant: dict[str, int] = {}

    @property
    def inflight(self) -> int:
        """Requests in flight now."""
        return self._inflight

    def tenant_inflight(self, tenant: str) -> int:
        """The tenant's requests in flight now."""
        return self._by_tenant.get(tenant, 0)

    def _may_take(self, tenant: str) -> bool:
        return self._inflight < self._capacity and self._by_tenant.get(tenant, 0) < self._per_tenant

    def _take(self, tenant: str) -> None:
        self._inflight += 1
        n = self._by_tenant[tenant] = self._by_tenant.get(tenant, 0) + 1
        self.max_inflight = max(self.max_inflight, self._inflight)
        self.max_by_tenant[tenant] = max(self.max_by_tenant.get(tenant, 0), n)

    async def acquire(self, tenant: str) -> None:
        """Wait for a slot (fairly), then hold it until :meth:`release`."""
        if tenant not in self._waiting and self._may_take(tenant):
            self._take(tenant)
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(tenant, deque()).append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                # Granted just as the caller gave up: hand the slot on.
                self.release(tenant)
            else:
                queue = self._waiting.get(tenant)
                if queue is not None and waiter in queue:
                    queue.remove(waiter)
                    if not queue:
                        del self._waiting[tenant]
            raise

    def release(self, tenant: str) -> None:
        """Give a slot back and hand free slots to waiting tenants, round-robin."""
        self._inflight -= 1
        left = self._by_tenant[tenant] - 1
        if left:
            self._by_tenant[tenant] = left
        else:
            del self._by_tenant[tenant]
        self._grant()

    def _grant(self) -> None:
        progressed = True
        while progressed and self._inflight < self._capacity and self._waiting:
            progressed = False
            for tenant in list(self._waiting):
                if self._inflight >= self._capacity:
                    return
                if not self._may_take(tenant):
                    continue
                queue = self._waiting.pop(tenant)
                waiter = queue.popleft()
                if queue:
                    self._waiting[tenant] = queue  # to the back of the round
                if waiter.done():  # cancelled while queued
                    progressed = True
                    continue
                self._take(tenant)
                waiter.set_result(None)
                progressed = True


class RatePacer:
    """Keeps requests and tokens in every 60 s window within the provider's limits.

    Args:
        requests_per_minute: At most this many requests in any 60 s (``None``: no limit).
        tokens_per_minute: At most this many tokens in any 60 s (``None``: no limit).
        clock: A monotonic clock (tests pass their own).
    """

    def __init__(
        self,
        requests_per_minute: int | None,
        tokens_per_minute: int | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rpm = requests_per_minute
        self._tpm = tokens_per_minute
        self._clock = clock
        self._requests = SlidingWindow(60.0)
        # Tokens in 1 s buckets: bounded memory whatever the limit; a bucket may count up to
        # one second longer than the exact window, never shorter.
        self._tokens = SlidingWindow(60.0, granularity_s=1.0)

    def check(self, tokens: int) -> None:
        """Refuse a request that can never be sent (more tokens than a whole minute allows).

        Raises:
            InvalidInput: ``tokens`` exceeds ``tokens_per_minute``.
        """
        if self._tpm is not None and tokens > self._tpm:
            raise InvalidInput(
                f"the call needs up to {tokens} tokens, more than the provider's "
                f"{self._tpm} tokens per minute",
                {"tokens": tokens, "tokensPerMinute": self._tpm},
            )

    def delay(self, tokens: int) -> float:
        """Seconds to wait before a request of ``tokens`` may be sent (0: now)."""
        now = self._clock()
        wait = 0.0
        if self._rpm is not None and self._requests.used(now) + 1 > self._rpm:
            wait = max(wait, self._requests.wait_for(now, self._requests.used(now) + 1 - self._rpm))
        if self._tpm is not None and self._tokens.used(now) + tokens > self._tpm:
            need = self._tokens.used(now) + tokens - self._tpm
            wait = max(wait, self._tokens.wait_for(now, need))
        return wait

    def record(self, tokens: int) -> None:
        """Count one request of ``tokens`` sent now."""
        now = self._clock()
        if self._rpm is not None:
            self._requests.add(now, 1)
        if self._tpm is not None and tokens > 0:
            self._tokens.add(now, tokens)

    async def wait_turn(self, tokens: int) -> None:
        """Wait until the request may be sent, and count it (atomically on this loop)."""
        self.check(tokens)
        while True:
            wait = self.delay(tokens)
            if wait <= 0:
                self.record(tokens)
                return
            await asyncio.sleep(wait)
