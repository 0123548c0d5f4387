"""The webhook delivery worker: one actor per engine that empties the outbox.

The core writes an event into the state file's outbox in the transaction that ends a task and
wakes the worker (:meth:`WebhookWorker.kick`, not awaited); the worker also looks for work on
its own every ``poll_interval_s``, so a lost wake-up only delays a delivery. Each round of its
loop (:meth:`WebhookWorker._run`) is one transaction, on a thread
(:meth:`~rlm.webhooks.store.WebhookStore.step`): record the attempts that finished, fan new
events out into deliveries, lease the due ones. Then it starts an HTTP attempt per leased
delivery and sleeps until woken or the next one is due.

Attempts run concurrently (``max_in_flight``, at most ``max_in_flight_per_webhook`` per
webhook, so a receiver that hangs holds a few slots, never the worker) with a timeout each.
A worker that dies (killed, or its engine stopped) leaves its leased deliveries pending; the
next one (Ray restarts it, or a new engine creates it) releases the leases and sends them again,
under the same ``webhook-id``: delivery is at least once.

It also serves the registration routes (:class:`~rlm.webhooks.service.WebhookService`, on a
thread: SQLite and DNS block), so the core's hot path never carries webhook work beyond one
indexed lookup in the task's final transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from typing import Any

import ray

from rlm.admission import Viewer
from rlm.config import Settings
from rlm.errors import InvalidInput, RLMError
from rlm.runtime.background import StarvationWatch, run_in_background
from rlm.runtime.security import install_event_sink
from rlm.security import record_security_event
from rlm.webhooks.addresses import AddressPolicy, Resolver, SystemResolver
from rlm.webhooks.backoff import RetrySchedule
from rlm.webhooks.lifecycle import decide
from rlm.webhooks.sender import WebhookSender
from rlm.webhooks.service import WebhookService
from rlm.webhooks.signing import active_secrets, signed_headers
from rlm.webhooks.store import Job, Outcome, Step, WebhookStore
from rlm.webhooks.wake import WakeListener, wake_address

__all__ = ["WebhookWorker", "WebhookWorkerActor", "worker_name"]

log = logging.getLogger(__name__)

#: The registration methods callers may reach through :meth:`WebhookWorker.call`.
_CALLS = frozenset(
    {
        "create",
        "list_webhooks",
        "get",
        "update",
        "delete",
        "rotate",
        "deliveries",
        "delivery",
        "retry",
    }
)

#: How often finished deliveries older than the retention are pruned.
_PRUNE_EVERY_S = 600.0

#: Finished attempts are recorded with the next round, or at the latest after this long: one
#: transaction then records them and claims what the next wake-up brought.
_RECORD_WITHIN_S = 0.01

#: Rounds start at least this far apart (unless slots wait for due deliveries): under a steady
#: stream of events one transaction takes several tasks' events, instead of one each. A lone
#: event is not delayed.
_ROUND_GAP_S = 0.005


def worker_name(settings: Settings) -> str:
    """The worker's actor name: one per state directory, like the core's."""
    digest = hashlib.sha256(str(settings.state_dir.resolve()).encode()).hexdigest()[:12]
    return f"rlm-webhooks-{digest}"


class WebhookWorker:
    """Sends due deliveries and serves webhook registrations; wrapped as
    :data:`WebhookWorkerActor`.

    Args:
        settings: The service settings (state file, ``webhooks``).
        resolver: Resolves host names for the SSRF guard (the system's by default; tests
            pass their own).
    """

    def __init__(self, settings: Settings, resolver: Resolver | None = None) -> None:
        ws = settings.webhooks
        self._ws = ws
        # Background work: under CPU contention the engine's tasks go first. Every thread of
        # the process (os.nice would lower only this one), and while the machine saturates,
        # the watch below gives the normal class back so deliveries still move.
        run_in_background(ws.worker_nice, idle=ws.worker_idle)
        self._starving = StarvationWatch(ws.worker_nice)
        resolver = resolver or SystemResolver()
        if settings.database_dsn is not None:
            from rlm.db.pool import configure_pools  # PostgreSQL only: psycopg imported lazily

            configure_pools(settings.database_pool_size)
        self._store = WebhookStore(settings.database_path, ws, database_url=settings.database_dsn)
        self._service = WebhookService(self._store, ws, resolver)
        self._sender = WebhookSender(
            AddressPolicy(ws.allow_http, ws.allow_loopback),
            resolver,
            timeout_s=ws.attempt_timeout_s,
            max_connections=ws.max_in_flight,
        )
        self._schedule = RetrySchedule.from_settings(ws)
        # A lease outlives an attempt comfortably: only a dead worker's leases ever expire.
        self._lease_s = ws.attempt_timeout_s + 30.0
        # Whatever a previous worker had claimed is due again now. On a shared PostgreSQL
        # store the leases may be another live instance's worker's: leave them to expire (a
        # lease's end is its next attempt time, so a dead worker's come due by themselves).
        shared = settings.database_url is not None
        self._released = 0 if shared else self._store.release_leases()
        self._wake = asyncio.Event()
        self._inflight: dict[str, int] = {}
        self._total = 0
        self._finished: list[Outcome] = []
        self._waiters: dict[str, asyncio.Future[None]] = {}
        self._counts = {"attempts": 0, "succeeded": 0, "failedAttempts": 0, "disabled": 0}
        self._pruned_at = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self._backlog = False
        self._round_at = 0.0
        # Constructed on its event loop (an async actor): listen for the core's wake-ups and
        # start delivering at once, also after a restart, without waiting for a first call.
        self._listener: WakeListener | None = None
        address = wake_address(settings.state_dir)
        if address is not None:
            try:
                self._listener = WakeListener(address, self._wake.set)
            except OSError:
                log.warning("no wake-up socket for the webhook worker: the core's calls wake it")
        self._loop = asyncio.get_running_loop().create_task(self._run())
        self._watch = (
            asyncio.get_running_loop().create_task(self._starving.run()) if ws.worker_idle else None
        )
        install_event_sink(settings)

    def _record_disabled(self, webhook_id: str, reason: str) -> None:
        row = self._store.webhook(webhook_id)
        record_security_event(
            "webhook.disabled",
            message=f"webhook {webhook_id} was disabled: {reason}",
            org_id=None if row is None else row.org_id,
            user_id=None if row is None else row.owner_id,
            details={"webhookId": webhook_id, "reason": reason},
        )

    # -- public methods ----------------------------------------------------------------------

    async def ready(self) -> dict[str, Any]:
        """The worker's counters (it is up once this answers)."""
        return await self.stats()

    async def kick(self) -> None:
        """New deliveries were queued: look for due ones now."""
        self._wake.set()

    async def stats(self) -> dict[str, Any]:
        """Attempts made, succeeded and failed; deliveries in flight; webhooks disabled."""
        return {
            **self._counts,
            "inFlight": self._total,
            "releasedAtStart": self._released,
            "pid": os.getpid(),
            "starvedPromotions": self._starving.promotions,
        }

    async def call(self, method: str, viewer: Viewer, *args: Any) -> tuple[str, Any]:
        """One registration call (see :class:`WebhookService`), as ``("ok", value)`` or
        ``("err", error payload)``."""
        if method not in _CALLS:
            return "err", InvalidInput(f"unknown webhook method {method!r}").to_payload()
        try:
            value = await asyncio.to_thread(getattr(self._service, method), viewer, *args)
        except RLMError as err:
            return "err", err.to_payload()
        if method == "retry":
            self._wake.set()
        return "ok", value

    async def test(self, viewer: Viewer, webhook_id: str) -> tuple[str, Any]:
        """Send a ``webhook.test`` ping now and answer with its delivery once the first
        attempt has ended (or the attempt timeout has passed)."""
        try:
            delivery_id = await asyncio.to_thread(self._service.ping, viewer, webhook_id)
            done = asyncio.get_running_loop().create_future()
            self._waiters[delivery_id] = done
            self._wake.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done, self._ws.attempt_timeout_s + 5.0)
            self._waiters.pop(delivery_id, None)
            value = await asyncio.to_thread(self._service.delivery, viewer, webhook_id, delivery_id)
        except RLMError as err:
            return "err", err.to_payload()
        return "ok", value

    async def close(self) -> None:
        """Stop delivering and close connections (tests; an engine simply dies)."""
        self._loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._loop
        if self._watch is not None:
            self._watch.cancel()
        if self._listener is not None:
            self._listener.close()
        await self._sender.close()
        self._store.close()

    # -- the loop ------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except Exception:  # a locked file or a full disk must not stop deliveries
                log.exception("webhook delivery step failed")
                await asyncio.sleep(self._ws.poll_interval_s)

    async def _step(self) -> None:
        gap = _ROUND_GAP_S - (time.monotonic() - self._round_at)
        if gap > 0 and not self._backlog:
            await asyncio.sleep(gap)
        self._round_at = time.monotonic()
        self._wake.clear()
        finished, self._finished = self._finished, []
        ws = self._ws
        free = ws.max_in_flight - self._total
        room = {w: ws.max_in_flight_per_webhook - n for w, n in self._inflight.items()}
        step = await asyncio.to_thread(self._db_step, finished, free, room)
        jobs, next_due, disabled = step.jobs, step.next_due, step.disabled
        for webhook_id, reason in disabled:
            # On record twice: in the webhook's own state (status, disabledReason, disabledAt)
            # and in the audit log, where its org's admins read it.
            self._counts["disabled"] += 1
            log.warning("webhook %s disabled: %s", webhook_id, reason)
            self._record_disabled(webhook_id, reason)
        for outcome in finished:
            waiter = self._waiters.pop(outcome.job.delivery_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        for job in jobs:
            self._inflight[job.webhook_id] = self._inflight.get(job.webhook_id, 0) + 1
            self._total += 1
            task = asyncio.create_task(self._deliver(job))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._backlog = bool(jobs) and len(jobs) == free
        if self._backlog:
            return  # every slot was filled: more may be due, go round again at once
        timeout = ws.poll_interval_s
        if next_due is not None and next_due > time.time():
            timeout = min(timeout, max(0.001, next_due - time.time()))
        if self._finished or self._total:
            timeout = min(timeout, _RECORD_WITHIN_S)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    def _db_step(self, finished: list[Outcome], free: int, room: dict[str, int]) -> Step:
        step = self._store.step(
            finished, free, self._lease_s, room, self._ws.max_in_flight_per_webhook
        )
        now = time.time()
        if now - self._pruned_at > _PRUNE_EVERY_S:
            self._pruned_at = now
            self._store.prune(self._ws.retention_s)
        return step

    async def _deliver(self, job: Job) -> None:
        try:
            now = time.time()
            headers = signed_headers(
                job.event_id, int(now), job.body, active_secrets(job.secrets, now)
            )
            result = await self._sender.send(job.url, headers, job.body)
            at = time.time()
            decision = decide(
                result,
                attempts=job.attempts + 1,
                now=at,
                expires_at=job.expires_at,
                schedule=self._schedule,
            )
            self._counts["attempts"] += 1
            self._counts["succeeded" if result.ok else "failedAttempts"] += 1
            self._finished.append(Outcome(job, result, decision, at))
        except Exception:  # pragma: no cover - the lease brings it back after a restart
            log.exception("delivery %s failed unexpectedly", job.delivery_id)
        finally:
            left = self._inflight.get(job.webhook_id, 1) - 1
            if left > 0:
                self._inflight[job.webhook_id] = left
            else:
                self._inflight.pop(job.webhook_id, None)
            self._total -= 1
            # Recorded with the next round (see _RECORD_WITHIN_S), unless slots are awaited
            # or someone waits for this very delivery.
            if self._backlog or job.delivery_id in self._waiters:
                self._wake.set()


#: The worker as a Ray actor: async, restarted by Ray when it dies (it resumes from the file).
WebhookWorkerActor = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)(WebhookWorker)
