"""The quota ledger with durable state: the plain class the runtime turns into an actor.

Every mutating method applies the call to the in-memory :class:`QuotaLedger` and writes the
entities it changed to the :class:`QuotaStore` before returning, so an answer a caller has
seen is never lost by a restart. Arguments and results are plain values, frozen dataclasses or
pydantic models: all picklable across a Ray actor boundary.

Example:
    >>> service = QuotaLedgerService("/tmp/quotas.db")              # doctest: +SKIP
    >>> r = service.reserve("ada", 10, tier="user", task_id="t1")   # doctest: +SKIP
    >>> service.reconcile(r.reservation_id, 8, 0.1)                 # doctest: +SKIP
"""

from __future__ import annotations

import functools
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from rlm.errors import InternalError
from rlm.quotas.backend import QuotaStateStore, open_quota_store
from rlm.quotas.clock import Clock, SystemClock
from rlm.quotas.ledger import QuotaLedger
from rlm.quotas.ledger_batch import BATCHABLE, check_batchable
from rlm.quotas.settings import QuotaSettings

__all__ = ["BATCHABLE", "BatchCall", "Outcome", "QuotaLedgerService", "READS", "WRITES"]

T = TypeVar("T")

#: One call of a batch: a method name, its positional and its keyword arguments.
BatchCall = tuple[str, Sequence[Any], dict[str, Any]]

#: One call's answer in a batch: its value, or the :class:`RLMError` it raised.
Outcome = Any

#: How often a change made on a ledger another instance had just changed is applied again.
_MAX_ATTEMPTS = 100

#: The ledger's methods that only read.
READS = frozenset(
    {
        "user_config",
        "user_status",
        "check",
        "reservation",
        "open_reservations",
        "token_hold",
        "open_token_holds",
        "team_status",
        "governing_orgs",
        "organization",
        "hierarchy",
        "pending_events",
        "pending_event_count",
        "pending_event_items",
        "snapshot",
        "usage_history",
    }
)

#: The ledger's methods that change it: each is persisted before it answers.
WRITES = frozenset(
    {
        "set_user_config",
        "clear_user_config",
        "set_user_org",
        "reserve",
        "reconcile",
        "release",
        "reap_expired",
        "reserve_tokens",
        "settle_tokens",
        "release_tokens",
        "reap_expired_tokens",
        "prune_history",
        "create_team",
        "add_member",
        "set_member_allocation",
        "set_project_allocation",
        "transfer",
        "create_org",
        "patch_org",
        "drain_events",
        "ack_events",
        "managed_set_user_config",
        "managed_create_team",
        "managed_add_member",
        "managed_set_project_allocation",
        "managed_transfer",
        "managed_create_org",
        "managed_patch_org",
    }
)

if TYPE_CHECKING:
    # For the type checker the service has the ledger's methods, which __getattr__ provides
    # (restore and pop_changes excepted: they are the store's business, not callers').
    _LedgerMethods = QuotaLedger
else:
    _LedgerMethods = object


class QuotaLedgerService(_LedgerMethods):
    """A :class:`QuotaLedger` whose every change is persisted before the call returns.

    It answers every public method of the ledger (see :data:`READS` and :data:`WRITES`) with
    the ledger's own signature and docstring: reads run under the lock, writes also persist
    what they changed (:meth:`_commit`) before returning.

    With a PostgreSQL store (``database_url``) several services, in several processes or
    clusters, share one ledger: each change runs in one transaction holding the ledger's lock
    across all of them, after catching up with what the others wrote (see
    :mod:`rlm.quotas.pg_store`), and each read first catches up.

    Args:
        path: The SQLite state file (its journal is ``<path>.journal``); unused with
            ``database_url``.
        settings: Tier defaults and alert thresholds.
        clock: Where time comes from (the system clock by default).
        compact_every: Journal records between compactions (see :class:`QuotaStore`).
        database_url: A ``postgresql://`` URL: keep the ledger there instead.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        settings: QuotaSettings | None = None,
        clock: Clock | None = None,
        *,
        compact_every: int = 10_000,
        database_url: str | None = None,
    ) -> None:
        self._clock: Clock = clock or SystemClock()
        self._settings = settings or QuotaSettings()
        self._store: QuotaStateStore = open_quota_store(
            path, database_url, compact_every=compact_every
        )
        self._ledger = self._store.load_ledger(self._clock, self._settings)
        # Ray runs an actor's methods one at a time unless told otherwise; the lock keeps a
        # threaded actor (max_concurrency > 1) or a plain multi-threaded caller just as safe.
        self._lock = threading.RLock()

    def __getattr__(self, name: str) -> Any:
        # Only called for names the class lacks: the ledger's methods, guarded.
        if name in WRITES:
            guard = self._commit
        elif name in READS:
            guard = self._read
        else:
            raise AttributeError(f"{type(self).__name__!r} has no attribute {name!r}")
        method = getattr(QuotaLedger, name)

        @functools.wraps(method)
        def call(*args: Any, **kwargs: Any) -> Any:
            # self._ledger is looked up per call: a failed write replaces it (see _persist).
            return guard(lambda: getattr(self._ledger, name)(*args, **kwargs))

        self.__dict__[name] = call  # built once: later lookups find it without __getattr__
        return call

    def batch(self, calls: Sequence[BatchCall]) -> list[Outcome]:
        """Apply several admission calls in order and persist them together (group commit).

        Each call answers on its own, as it would alone: a refused reservation is an error in
        its slot and does not undo the others. The batch happens at one instant, and runs of
        alike reserves or reconciles are applied as one hold per counter (see
        :mod:`rlm.quotas.ledger_batch`), with the same outcome as one by one. All the changes
        reach the state file in one journal record before any answer is returned, so a front
        end that gathers the admissions of many requests pays one write (and one actor call)
        for all of them.

        Args:
            calls: ``(method, args, kwargs)`` with ``method`` in :data:`BATCHABLE`.

        Returns:
            One outcome per call: its value, or the :class:`RLMError` it raised.

        Raises:
            InvalidInput: A call names a method outside :data:`BATCHABLE` (nothing is applied).
            InternalError: The changes could not be saved; memory is rolled back to the file,
                so none of the calls took effect.
        """
        check_batchable(calls)  # before anything is applied
        # self._ledger is looked up inside: a failed write replaces it (see _commit).
        return self._commit(lambda: self._ledger.apply_batch(calls))

    # -- lifecycle -------------------------------------------------------------------------

    def compact(self) -> None:
        """Fold the store's journal into entity rows now.

        The store also compacts by itself every ``compact_every`` calls; a caller that prefers
        to pay that cost (a checkpoint of the SQLite WAL) at a quiet moment calls this.
        """
        with self._lock:
            self._store.compact()

    def close(self) -> None:
        """Close the state file."""
        with self._lock:
            self._store.close()

    def _read(self, call: Callable[[], T]) -> T:
        with self._lock:
            try:
                fresh = self._store.refresh()
            except InternalError:
                # Answer from memory rather than not at all: a read decides nothing durable.
                fresh = None
            if fresh is not None:
                self._ledger = QuotaLedger.restore(fresh, self._clock, self._settings)
            return call()

    def _commit(self, call: Callable[[], T]) -> T:
        with self._lock:
            for _ in range(_MAX_ATTEMPTS):
                failure: BaseException | None = None
                try:
                    result = call()
                except BaseException as err:
                    failure = err
                try:
                    # Also after a failed call: whatever it changed in memory must be stored
                    # (refusals change nothing, so this is normally empty). On a shared store
                    # even an empty commit checks that the answer was made on the current
                    # ledger: a refusal from a stale one would be wrong too.
                    fresh = self._store.commit(self._ledger.pop_changes())
                except (sqlite3.Error, OSError, InternalError) as err:
                    # Memory is now ahead of the store; fall back to what is durable.
                    self._ledger = self._store.load_ledger(self._clock, self._settings)
                    raise InternalError(
                        "the quota state could not be saved", {"cause": str(err)}
                    ) from err
                if fresh is None:
                    if failure is not None:
                        raise failure
                    return result
                # Another instance wrote first: nothing was stored; answer from its state.
                self._ledger = QuotaLedger.restore(fresh, self._clock, self._settings)
            raise InternalError(
                f"the quota ledger changed under {_MAX_ATTEMPTS} attempts in a row; try again"
            )
