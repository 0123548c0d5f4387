"""The ledger's entities, which of them changed, and their stored form.

Every piece of quota state is an entity named ``(kind, key)`` (see :mod:`rlm.quotas.changes`).
:class:`LedgerState` owns them all, records the keys a call touches, and encodes entities to
JSON-ready dicts for a snapshot or for the rows a store writes.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from rlm.errors import InvalidInput
from rlm.models.quotas import QuotaConfig
from rlm.quotas.accounts import UserAccount
from rlm.quotas.changes import KINDS, ChangeSet, EntityKey, Snapshot
from rlm.quotas.orgs import Org, OrgTree
from rlm.quotas.records import (
    Reservation,
    Settlement,
    TokenHold,
    TokenSettlement,
    TransferReceipt,
)
from rlm.quotas.teams import Member, Team, TeamBook, member_key, split_member_key
from rlm.quotas.usage import UsageBook

__all__ = ["LedgerState", "META", "SNAPSHOT_VERSION"]

SNAPSHOT_VERSION = 1
META: EntityKey = ("meta", "ledger")


@dataclass(eq=False)
class LedgerState:
    """All quota entities and the set of keys changed since the last :meth:`pop_changes`.

    Attributes:
        changed: Keys to persist; a new state starts with the meta row so a store has one.
        users: Accounts by user id.
        teams: Teams, their members and transfer receipts.
        orgs: The org tree.
        open: Open reservations by id.
        open_by_task: Open reservation id by task id (derived; not stored).
        settled: Settlements by reservation id (kept for idempotent repeats); stored in the
            reservation's own row.
        token_holds: Open language-model token holds by id; only the ``durable`` ones (made
            against a ``dailyTokenLimit``) are stored.
        token_settled: Token settlements by hold id, stored in the hold's own row.
        tokens_held: Tokens of each user's open holds (derived; not stored).
        events: Undelivered webhook payloads by zero-padded sequence number.
        next_event: The next event sequence number.
        usage: Hourly usage buckets of every user, team and org (usage over time).
    """

    changed: set[EntityKey] = field(default_factory=lambda: {META})
    users: dict[str, UserAccount] = field(default_factory=dict)
    teams: TeamBook = field(init=False)
    orgs: OrgTree = field(init=False)
    usage: UsageBook = field(init=False)
    open: dict[str, Reservation] = field(default_factory=dict)
    open_by_task: dict[str, str] = field(default_factory=dict)
    settled: dict[str, Settlement] = field(default_factory=dict)
    token_holds: dict[str, TokenHold] = field(default_factory=dict)
    token_settled: dict[str, TokenSettlement] = field(default_factory=dict)
    tokens_held: dict[str, int] = field(default_factory=dict)
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    next_event: int = 0

    def __post_init__(self) -> None:
        # Teams and orgs record their own changes into the same set.
        self.teams = TeamBook(self.changed)
        self.orgs = OrgTree(self.changed)
        self.usage = UsageBook(self.changed)

    def touch(self, res: Reservation) -> None:
        """Mark every entity a reservation's counters live in as changed."""
        self.changed.add(("user", res.user_id))
        if res.team_id is not None:
            self.changed.add(("team", res.team_id))
            self.changed.add(("member", member_key(res.team_id, res.user_id)))
        self.changed.update(("org", o) for o in res.org_ids)

    def open_token_hold(self, hold: TokenHold) -> None:
        """Record an open token hold (persisted only if it is ``durable``)."""
        self.token_holds[hold.hold_id] = hold
        self.tokens_held[hold.user_id] = self.tokens_held.get(hold.user_id, 0) + hold.tokens
        if hold.durable:
            self.changed.add(("token_hold", hold.hold_id))

    def close_token_hold(self, hold: TokenHold, settlement: TokenSettlement) -> None:
        """Replace an open token hold by its settlement (always persisted)."""
        del self.token_holds[hold.hold_id]
        left = self.tokens_held.get(hold.user_id, 0) - hold.tokens
        if left > 0:
            self.tokens_held[hold.user_id] = left
        else:
            self.tokens_held.pop(hold.user_id, None)
        self.token_settled[hold.hold_id] = settlement
        self.changed.add(("token_hold", hold.hold_id))

    def add_event(self, payload: dict[str, Any]) -> str:
        """Queue a webhook payload; returns its key."""
        key = f"{self.next_event:016d}"
        self.next_event += 1
        self.events[key] = payload
        self.changed.add(("event", key))
        self.changed.add(META)
        return key

    def remove_events(self, keys: Iterable[str]) -> int:
        """Remove the queued payloads named by ``keys`` (unknown keys are ignored)."""
        removed = 0
        for key in keys:
            if self.events.pop(key, None) is not None:
                self.changed.add(("event", key))
                removed += 1
        return removed

    def drain_events(self) -> list[dict[str, Any]]:
        """Remove and return every queued payload, oldest first."""
        out = list(self.events.values())
        self.changed.update(("event", k) for k in self.events)
        self.events.clear()
        return out

    def pop_changes(self) -> ChangeSet:
        """The rows changed since the last call (upserts and deletes), then forget them."""
        changes = ChangeSet()
        for kind, key in self.changed:
            data = self.encode(kind, key)
            if data is None:
                changes.deletes.append((kind, key))
            else:
                changes.upserts.append((kind, key, data))
        self.changed.clear()
        return changes

    def snapshot(self) -> Snapshot:
        """Every entity, ``{kind: {key: data}}`` (all kinds present)."""
        keys: list[EntityKey] = [META]
        keys += [("user", k) for k in self.users]
        keys += [("config", k) for k, u in self.users.items() if u.config is not None]
        keys += [("team", k) for k in self.teams.teams]
        keys += [
            ("member", member_key(t.team_id, u))
            for t in self.teams.teams.values()
            for u in t.members
        ]
        keys += [("org", k) for k in self.orgs.orgs]
        keys += [("reservation", k) for k in self.open]
        keys += [("reservation", k) for k in self.settled]
        keys += [("token_hold", k) for k, h in self.token_holds.items() if h.durable]
        keys += [("token_hold", k) for k in self.token_settled]
        keys += [("transfer", k) for k in self.teams.receipts]
        keys += [("event", k) for k in self.events]
        keys += [("usage", k) for k in self.usage.stored_keys()]
        snap: Snapshot = {kind: {} for kind in KINDS}
        for kind, key in keys:
            data = self.encode(kind, key)
            if data is not None:
                snap[kind][key] = data
        return snap

    @classmethod
    def from_snapshot(cls, snapshot: Snapshot) -> LedgerState:
        """Rebuild the state :meth:`snapshot` (or a store) wrote.

        Raises:
            InvalidInput: Unknown snapshot version, or a broken org tree.
        """
        meta = snapshot.get("meta", {}).get("ledger", {"version": SNAPSHOT_VERSION})
        if meta.get("version") != SNAPSHOT_VERSION:
            raise InvalidInput(f"unsupported quota snapshot version {meta.get('version')!r}")
        rows = {kind: snapshot.get(kind, {}) for kind in KINDS}
        state = cls(next_event=int(meta.get("nextEventSeq", 0)))
        state.users = {k: UserAccount.from_dict(v) for k, v in rows["user"].items()}
        for user_id, config in rows["config"].items():
            state.users[user_id].config = QuotaConfig.model_validate(config, strict=False)
        state.teams.teams = {k: Team.from_dict(v) for k, v in rows["team"].items()}
        for data in rows["member"].values():
            state.teams.attach(data["teamId"], Member.from_dict(data))
        state.teams.receipts = {
            k: TransferReceipt.from_dict(v) for k, v in rows["transfer"].items()
        }
        state.orgs.orgs = {k: Org.from_dict(v) for k, v in rows["org"].items()}
        state.orgs.relink()
        for key, data in rows["reservation"].items():
            if "settled" in data:
                state.settled[key] = Settlement.from_dict(data["settled"])
            else:
                state.open[key] = Reservation.from_dict(data)
        state.open_by_task = {r.task_id: k for k, r in state.open.items()}
        for key, data in rows["token_hold"].items():
            if "settled" in data:
                state.token_settled[key] = TokenSettlement.from_dict(data["settled"])
            else:
                hold = TokenHold.from_dict(data)
                state.token_holds[key] = hold
                held = state.tokens_held.get(hold.user_id, 0)
                state.tokens_held[hold.user_id] = held + hold.tokens
        state.events = {k: copy.deepcopy(rows["event"][k]) for k in sorted(rows["event"])}
        state.usage.load(rows["usage"])
        # Histories in the order they were made, oldest first, as they grow in memory:
        # ``QuotaLedger.prune_history`` trims them from the front.
        state.settled = dict(sorted(state.settled.items(), key=lambda kv: kv[1].settled_at))
        state.token_settled = dict(
            sorted(state.token_settled.items(), key=lambda kv: kv[1].settled_at)
        )
        state.teams.receipts = dict(
            sorted(state.teams.receipts.items(), key=lambda kv: kv[1].transferred_at)
        )
        state.changed.clear()
        if "ledger" not in snapshot.get("meta", {}):
            state.changed.add(META)  # a new store: write the meta row with the first call
        return state

    def encode(self, kind: str, key: str) -> dict[str, Any] | None:
        """The stored form of one entity, or ``None`` if it no longer exists."""
        if kind == "user":
            user = self.users.get(key)
            return None if user is None else user.to_dict()
        if kind == "reservation":
            # One row per reservation, open or settled: settling rewrites the row instead of
            # deleting it and adding another, which halves the rows a compaction writes.
            res = self.open.get(key)
            if res is not None:
                return res.to_dict()
            done = self.settled.get(key)
            return None if done is None else {"settled": done.to_dict()}
        if kind == "token_hold":
            # Like a reservation: one row, the hold while open, then its settlement. A hold
            # made without a limit is never stored (it is never marked changed while open).
            hold = self.token_holds.get(key)
            if hold is not None:
                return hold.to_dict() if hold.durable else None
            closed = self.token_settled.get(key)
            return None if closed is None else {"settled": closed.to_dict()}
        if kind == "config":
            account = self.users.get(key)
            config = None if account is None else account.config
            return None if config is None else config.model_dump(mode="json")
        if kind == "team":
            team = self.teams.teams.get(key)
            return None if team is None else team.to_dict()
        if kind == "member":
            team_id, user_id = split_member_key(key)
            owner = self.teams.teams.get(team_id)
            member = None if owner is None else owner.members.get(user_id)
            return None if member is None else member.to_dict(team_id)
        if kind == "org":
            org = self.orgs.orgs.get(key)
            return None if org is None else org.to_dict()
        if kind == "transfer":
            receipt = self.teams.receipts.get(key)
            return None if receipt is None else receipt.to_dict()
        if kind == "event":
            event = self.events.get(key)
            # A copy: the caller that drains the event may mutate it; the stored row must not.
            return None if event is None else copy.deepcopy(event)
        if kind == "usage":
            return self.usage.encode(key)
        if (kind, key) == META:
            return {"version": SNAPSHOT_VERSION, "nextEventSeq": self.next_event}
        return None
