"""The security service: the audit log and each org's policies behind one writer.

A plain class (no Ray): the runtime makes it the security actor
(:mod:`rlm.runtime.security`), tests and the Ray-less app use it in-process. One instance
owns ``security.db``: it is the chain's only writer, so records are appended in one order.
Every call is one transaction; a policy change and its ``admin.change`` record commit
together, or neither does.

With a PostgreSQL state store every service instance has one of these, all on the same
tables: each write transaction starts with the advisory lock of ``security.db`` (see
:mod:`rlm.db.compat`) and the chain's newest record is read under it, so the instances append
to one chain in one order. Policies are read through (every :meth:`changed_policies` reads the
database): a change made on one instance is what the next lookup on any other returns. The
callers' own caches (two seconds in a Serve replica and an RLM session) bound how late.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from rlm.models.security import (
    SecurityEventPage,
    SecurityPolicy,
    SecurityPolicyList,
    SecurityPolicyPatch,
    SecurityPolicyUpdate,
)
from rlm.security.audit import AuditLog, ChainReport, decode_cursor
from rlm.security.events import SecurityEventIn
from rlm.security.policies import PolicySet, apply_patch, apply_put, policy_changes
from rlm.security.store import (
    AUDIT_KEY_FILENAME,
    PolicyStore,
    claim_key,
    load_or_create_key,
    open_security_store,
)

__all__ = ["MAX_EVENTS_PAGE", "SecurityService"]

MAX_EVENTS_PAGE = 1000
"""The largest ``limit`` of ``GET /security/events``."""


class SecurityService:
    """The audit log and policies of one state directory.

    Args:
        state_dir: Where ``security.db`` and ``audit-key`` live (created 0600).
        database_url: Keep the log and policies in this PostgreSQL database instead, shared
            with every instance on it (the key stays in ``state_dir``; it must be the same
            file on every instance).

    Raises:
        InternalError: On PostgreSQL, this instance's key is not the shared chain's.
    """

    def __init__(self, state_dir: str | Path, *, database_url: str | None = None) -> None:
        state = Path(state_dir)
        key = load_or_create_key(state / AUDIT_KEY_FILENAME)
        self._conn = open_security_store(state, database_url)
        try:
            if database_url is not None:
                claim_key(self._conn, key)
            self._log = AuditLog(self._conn, key)
        except BaseException:
            self._conn.close()
            raise
        self._policies = PolicyStore(self._conn)
        self._lock = threading.Lock()

    def record(self, events: Sequence[SecurityEventIn]) -> int:
        """Append events to the log in one transaction; events already there (a retried
        batch) are skipped. Returns how many were appended."""
        if not events:
            return 0
        with self._lock:
            ids = [e.event_id for e in events]
            marks = ",".join("?" * len(ids))
            # Write-locked first: what is already there is read under the same lock as the
            # chain's head (another instance may be appending).
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                seen = {
                    r[0]
                    for r in self._conn.execute(
                        f"SELECT event_id FROM events WHERE event_id IN ({marks})", ids
                    )
                }
                appended = self._log.append([e for e in events if e.event_id not in seen])
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                self._log.rollback_to_committed()
                raise
            return appended

    # -- policies -----------------------------------------------------------------------------

    def changed_policies(self, org_id: str | None) -> dict[str, SecurityPolicy]:
        """The org's changed policies (what a :class:`PolicySet` is built from)."""
        if org_id is None:
            return {}
        with self._lock:
            return self._policies.changed(org_id)

    def policies(self, org_id: str | None) -> SecurityPolicyList:
        """Every policy in force for the org (the defaults for a caller in no org)."""
        return SecurityPolicyList(
            org_id=org_id, policies=PolicySet(self.changed_policies(org_id)).policies()
        )

    def update_policy(
        self,
        org_id: str,
        policy_id: str,
        body: SecurityPolicyUpdate | SecurityPolicyPatch,
        *,
        by: str,
        request_id: str | None = None,
    ) -> SecurityPolicy:
        """Change the org's policy (``PUT`` for an update, ``PATCH`` for a patch) and record
        the change, in one transaction.

        Raises:
            InvalidInput: an unknown policy, a locked one disabled, bad settings.
        """
        with self._lock:
            # The policy is read under the write lock: two instances patching one policy at
            # once apply their patches one after the other, neither lost.
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                current = PolicySet(self._policies.changed(org_id)).get(policy_id)
                now = datetime.now(UTC)
                if isinstance(body, SecurityPolicyUpdate):
                    updated, verb = apply_put(current, body, by=by, at=now), "PUT"
                else:
                    updated, verb = apply_patch(current, body, by=by, at=now), "PATCH"
                changes = policy_changes(current, updated)
                event = SecurityEventIn.of(
                    "admin.change",
                    message=f"{by} changed policy {policy_id} of org {org_id}"
                    + (f": {', '.join(changes)}" if changes else " (no change)"),
                    org_id=org_id,
                    user_id=by,
                    details={
                        "action": "policy.update",
                        "method": verb,
                        "policyId": policy_id,
                        "changes": changes,
                        "requestId": request_id,
                    },
                )
                self._policies.save(org_id, updated)
                self._log.append([event])
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                self._log.rollback_to_committed()
                raise
            return updated

    # -- reading the log ----------------------------------------------------------------------

    def events(
        self,
        org_id: str | None,
        *,
        limit: int = 100,
        severities: Sequence[str] | None = None,
        since: datetime | None = None,
        cursor: str | None = None,
        types: Sequence[str] | None = None,
    ) -> SecurityEventPage:
        """One org's events, newest first (``org_id`` ``None``: events of no org)."""
        before = decode_cursor(cursor) if cursor else None
        with self._lock:
            events, next_cursor = self._log.page(
                org_id,
                limit=min(limit, MAX_EVENTS_PAGE),
                severities=severities,
                since=since,
                before_seq=before,
                types=types,
            )
        return SecurityEventPage(events=events, next_cursor=next_cursor)

    def verify(self) -> ChainReport:
        """Check the whole chain (see :meth:`AuditLog.verify`)."""
        with self._lock:
            return self._log.verify()

    def close(self) -> None:
        """Close the state file."""
        with self._lock:
            self._conn.close()
