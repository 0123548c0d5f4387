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

import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, TypeVar

from rlm.errors import InternalError, InvalidInput, RLMError
from rlm.models.quotas import (
    AllocationDecision,
    Organization,
    OrganizationHierarchy,
    QuotaConfig,
    TeamMember,
    TeamQuotaStatus,
    UserQuotaStatus,
)
from rlm.quotas.changes import Snapshot
from rlm.quotas.clock import Clock, SystemClock
from rlm.quotas.records import Reservation, Settlement, TransferReceipt
from rlm.quotas.settings import QuotaSettings, Tier
from rlm.quotas.store import QuotaStore

__all__ = ["BATCHABLE", "BatchCall", "Outcome", "QuotaLedgerService"]

T = TypeVar("T")

#: One call of a batch: a method name, its positional and its keyword arguments.
BatchCall = tuple[str, Sequence[Any], dict[str, Any]]

#: One call's answer in a batch: its value, or the :class:`RLMError` it raised.
Outcome = Any

#: The methods :meth:`QuotaLedgerService.batch` applies: admission's hot path and its reads.
BATCHABLE = frozenset({"reserve", "reconcile", "release", "check", "user_status", "user_config"})


class QuotaLedgerService:
    """A :class:`QuotaLedger` whose every change is persisted before the call returns.

    Args:
        path: The SQLite state file (its journal is ``<path>.journal``).
        settings: Tier defaults and alert thresholds.
        clock: Where time comes from (the system clock by default).
        compact_every: Journal records between compactions (see :class:`QuotaStore`).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        settings: QuotaSettings | None = None,
        clock: Clock | None = None,
        *,
        compact_every: int = 10_000,
    ) -> None:
        self._clock: Clock = clock or SystemClock()
        self._settings = settings or QuotaSettings()
        self._store = QuotaStore(path, compact_every=compact_every)
        self._ledger = self._store.load_ledger(self._clock, self._settings)
        # Ray runs an actor's methods one at a time unless told otherwise; the lock keeps a
        # threaded actor (max_concurrency > 1) or a plain multi-threaded caller just as safe.
        self._lock = threading.RLock()

    # -- users -----------------------------------------------------------------------------

    def set_user_config(self, config: QuotaConfig, *, tier: Tier = "user") -> QuotaConfig:
        """See :meth:`QuotaLedger.set_user_config`."""
        return self._commit(lambda: self._ledger.set_user_config(config, tier=tier))

    def clear_user_config(self, user_id: str) -> None:
        """See :meth:`QuotaLedger.clear_user_config`."""
        self._commit(lambda: self._ledger.clear_user_config(user_id))

    def set_user_org(self, user_id: str, org_id: str | None, *, tier: Tier = "user") -> None:
        """See :meth:`QuotaLedger.set_user_org`."""
        self._commit(lambda: self._ledger.set_user_org(user_id, org_id, tier=tier))

    def user_config(self, user_id: str, *, tier: Tier | None = None) -> QuotaConfig:
        """See :meth:`QuotaLedger.user_config`."""
        return self._read(lambda: self._ledger.user_config(user_id, tier=tier))

    def user_status(self, user_id: str, *, tier: Tier | None = None) -> UserQuotaStatus:
        """See :meth:`QuotaLedger.user_status`."""
        return self._read(lambda: self._ledger.user_status(user_id, tier=tier))

    # -- admission -------------------------------------------------------------------------

    def check(
        self,
        user_id: str,
        agents: int,
        *,
        tier: Tier,
        team_id: str | None = None,
        org_id: str | None = None,
        concurrent_agents: int = 1,
        compute_hours: float = 0.0,
    ) -> AllocationDecision:
        """See :meth:`QuotaLedger.check` (a dry run; nothing is written)."""
        return self._read(
            lambda: self._ledger.check(
                user_id,
                agents,
                tier=tier,
                team_id=team_id,
                org_id=org_id,
                concurrent_agents=concurrent_agents,
                compute_hours=compute_hours,
            )
        )

    def reserve(
        self,
        user_id: str,
        agents: int,
        *,
        tier: Tier,
        task_id: str,
        team_id: str | None = None,
        org_id: str | None = None,
        concurrent_agents: int = 1,
        compute_hours: float = 0.0,
    ) -> Reservation:
        """See :meth:`QuotaLedger.reserve`."""
        return self._commit(
            lambda: self._ledger.reserve(
                user_id,
                agents,
                tier=tier,
                task_id=task_id,
                team_id=team_id,
                org_id=org_id,
                concurrent_agents=concurrent_agents,
                compute_hours=compute_hours,
            )
        )

    def reconcile(
        self, reservation_id: str, actual_agent_calls: int, compute_hours: float = 0.0
    ) -> Settlement:
        """See :meth:`QuotaLedger.reconcile`."""
        return self._commit(
            lambda: self._ledger.reconcile(reservation_id, actual_agent_calls, compute_hours)
        )

    def release(self, reservation_id: str) -> Settlement:
        """See :meth:`QuotaLedger.release`."""
        return self._commit(lambda: self._ledger.release(reservation_id))

    def reap_expired(self, max_age: timedelta, *, charge_planned: bool = False) -> list[Settlement]:
        """See :meth:`QuotaLedger.reap_expired`."""
        return self._commit(
            lambda: self._ledger.reap_expired(max_age, charge_planned=charge_planned)
        )

    def prune_history(self, max_age: timedelta) -> int:
        """See :meth:`QuotaLedger.prune_history`."""
        return self._commit(lambda: self._ledger.prune_history(max_age))

    def batch(self, calls: Sequence[BatchCall]) -> list[Outcome]:
        """Apply several admission calls in order and persist them together (group commit).

        Each call answers on its own, as it would alone: a refused reservation is an error in
        its slot and does not undo the others. All the changes reach the state file in one
        journal record before any answer is returned, so a front end that gathers the
        admissions of many requests pays one write (and one actor call) for all of them.

        Args:
            calls: ``(method, args, kwargs)`` with ``method`` in :data:`BATCHABLE`.

        Returns:
            One outcome per call: its value, or the :class:`RLMError` it raised.

        Raises:
            InvalidInput: A call names a method outside :data:`BATCHABLE` (nothing is applied).
            InternalError: The changes could not be saved; memory is rolled back to the file,
                so none of the calls took effect.
        """
        for i, (method, _, _) in enumerate(calls):
            if method not in BATCHABLE:
                raise InvalidInput(
                    f"{method!r} cannot be batched; one of {sorted(BATCHABLE)}",
                    field=f"calls[{i}].method",
                )
        outcomes: list[Outcome] = []
        with self._lock:
            try:
                for method, args, kwargs in calls:
                    try:
                        outcomes.append(getattr(self._ledger, method)(*args, **kwargs))
                    except RLMError as err:
                        outcomes.append(err)
                    except TypeError as err:  # the caller's arguments do not fit the method
                        outcomes.append(InvalidInput(f"{method}: {err}", field="calls"))
            finally:
                self._persist()
        return outcomes

    def open_reservations(self, user_id: str | None = None) -> list[Reservation]:
        """See :meth:`QuotaLedger.open_reservations`."""
        return self._read(lambda: self._ledger.open_reservations(user_id))

    # -- teams -----------------------------------------------------------------------------

    def create_team(
        self,
        team_id: str,
        team_name: str,
        total_agent_pool: int,
        total_compute_hours: float,
        total_storage_gb: float = 0.0,
        org_id: str | None = None,
    ) -> TeamQuotaStatus:
        """See :meth:`QuotaLedger.create_team`."""
        return self._commit(
            lambda: self._ledger.create_team(
                team_id, team_name, total_agent_pool, total_compute_hours, total_storage_gb, org_id
            )
        )

    def add_member(
        self,
        team_id: str,
        user_id: str,
        role: str = "member",
        agents: int | None = None,
        compute_hours: float | None = None,
    ) -> TeamMember:
        """See :meth:`QuotaLedger.add_member`."""
        return self._commit(
            lambda: self._ledger.add_member(team_id, user_id, role, agents, compute_hours)
        )

    def set_member_allocation(
        self, team_id: str, user_id: str, agents: int, compute_hours: float
    ) -> TeamMember:
        """See :meth:`QuotaLedger.set_member_allocation`."""
        return self._commit(
            lambda: self._ledger.set_member_allocation(team_id, user_id, agents, compute_hours)
        )

    def set_project_allocation(
        self, team_id: str, project_id: str, agents: int, compute_hours: float, name: str = ""
    ) -> TeamQuotaStatus:
        """See :meth:`QuotaLedger.set_project_allocation`."""
        return self._commit(
            lambda: self._ledger.set_project_allocation(
                team_id, project_id, agents, compute_hours, name
            )
        )

    def transfer(
        self,
        team_id: str,
        from_user: str,
        to_user: str,
        agents: int = 0,
        compute_hours: float = 0.0,
        idempotency_key: str | None = None,
    ) -> TransferReceipt:
        """See :meth:`QuotaLedger.transfer`."""
        return self._commit(
            lambda: self._ledger.transfer(
                team_id, from_user, to_user, agents, compute_hours, idempotency_key
            )
        )

    def team_status(self, team_id: str) -> TeamQuotaStatus:
        """See :meth:`QuotaLedger.team_status`."""
        return self._read(lambda: self._ledger.team_status(team_id))

    # -- orgs ------------------------------------------------------------------------------

    def create_org(
        self,
        org_id: str,
        name: str = "",
        parent_id: str | None = None,
        agents: int = 0,
        compute_hours: float = 0.0,
        storage_gb: float = 0.0,
    ) -> Organization:
        """See :meth:`QuotaLedger.create_org`."""
        return self._commit(
            lambda: self._ledger.create_org(
                org_id, name, parent_id, agents, compute_hours, storage_gb
            )
        )

    def patch_org(
        self,
        org_id: str,
        agents: int | None = None,
        compute_hours: float | None = None,
        storage_gb: float | None = None,
    ) -> Organization:
        """See :meth:`QuotaLedger.patch_org`."""
        return self._commit(
            lambda: self._ledger.patch_org(org_id, agents, compute_hours, storage_gb)
        )

    def governing_orgs(self, kind: str, entity_id: str) -> list[str]:
        """See :meth:`QuotaLedger.governing_orgs`."""
        return self._read(lambda: self._ledger.governing_orgs(kind, entity_id))

    def organization(self, org_id: str) -> Organization:
        """See :meth:`QuotaLedger.organization`."""
        return self._read(lambda: self._ledger.organization(org_id))

    def hierarchy(self, org_id: str) -> OrganizationHierarchy:
        """See :meth:`QuotaLedger.hierarchy`."""
        return self._read(lambda: self._ledger.hierarchy(org_id))

    # -- events ----------------------------------------------------------------------------

    def pending_events(self) -> list[dict[str, Any]]:
        """See :meth:`QuotaLedger.pending_events`."""
        return self._read(self._ledger.pending_events)

    def drain_events(self) -> list[dict[str, Any]]:
        """See :meth:`QuotaLedger.drain_events`; the removal is persisted (at most once)."""
        return self._commit(lambda: self._ledger.drain_events())

    # -- lifecycle -------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The full in-memory state (equal to what a reopened service would hold)."""
        return self._read(self._ledger.snapshot)

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
            return call()

    def _commit(self, call: Callable[[], T]) -> T:
        with self._lock:
            try:
                return call()
            finally:
                # Also after a failed call: whatever it changed in memory must reach the file
                # (refusals change nothing, so this is normally empty).
                self._persist()

    def _persist(self) -> None:
        try:
            self._store.apply(self._ledger.pop_changes())
        except (sqlite3.Error, OSError, InternalError) as err:
            # Memory is now ahead of the file; fall back to what is durable so the two agree.
            self._ledger = self._store.load_ledger(self._clock, self._settings)
            raise InternalError("the quota state could not be saved", {"cause": str(err)}) from err
