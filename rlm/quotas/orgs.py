"""The enterprise org tree: nested caps where every child fits inside its parent.

Invariants kept by every operation (a violation raises ``InvalidInput`` and changes nothing):

* a child's caps are at most its parent's, and Σ children's caps ≤ the parent's caps;
* a cap is never set below the usage its subtree already holds this month.

Usage is counted over the **calendar month** (UTC). An org's usage is the sum over its subtree:
a user's charge lands on their org and on every ancestor, so each org keeps a ``subtree``
counter (checked against its caps) and a ``direct`` counter (its own users only), with
``subtree == direct + Σ children's subtree``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rlm.errors import Conflict, InvalidInput
from rlm.models.quotas import Organization, OrganizationHierarchy
from rlm.quotas.changes import EntityKey
from rlm.quotas.counters import WindowCounter, from_micro, from_nano, to_micro
from rlm.quotas.inputs import check_count, check_id
from rlm.quotas.windows import WindowStarts, marks_from_row, marks_to_row

__all__ = ["Org", "OrgTree"]


@dataclass(slots=True)
class Org:
    """One node of the tree.

    Attributes:
        org_id: The org.
        name: Display name.
        parent_id: The parent, ``None`` for a root (an enterprise).
        agents: Agent calls per month for the whole subtree.
        compute: Micro-hours per month for the whole subtree.
        storage: Micro-GB (a cap only; storage use is not tracked here).
        subtree: Monthly usage of this org and all its descendants.
        direct: Monthly usage of this org's own users.
        children: Child ids, in creation order (derived from ``parent_id``; not stored).
        alerts: This month's start and the thresholds of the caps already announced in it.
        managers: Users who have managed this org (made a managed change as its manager):
            none of them may raise another's limits (the ``peer_raise`` rule).
    """

    org_id: str
    name: str
    parent_id: str | None
    agents: int
    compute: int
    storage: int
    subtree: WindowCounter
    direct: WindowCounter
    children: list[str] = field(default_factory=list)
    alerts: tuple[datetime, list[int]] | None = None
    managers: set[str] = field(default_factory=set)

    def view(self, starts: WindowStarts) -> Organization:
        """The API's ``Organization``; usage counts reservations in flight (tokens and cost:
        what the subtree settled this month)."""
        agents, compute = self.subtree.held(starts.monthly)
        tokens, cost = self.subtree.tokens(starts.monthly)
        return Organization(
            org_id=self.org_id,
            name=self.name,
            parent_id=self.parent_id,
            agents=self.agents,
            compute_hours=from_micro(self.compute),
            storage_gb=from_micro(self.storage),
            agents_used=agents,
            compute_hours_used=from_micro(compute),
            tokens_used=tokens,
            cost_usd=from_nano(cost),
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "orgId": self.org_id,
            "name": self.name,
            "parentId": self.parent_id,
            "agents": self.agents,
            "compute": self.compute,
            "storage": self.storage,
            "subtree": self.subtree.to_row(),
            "direct": self.direct.to_row(),
            "alerts": marks_to_row(self.alerts),
            "managers": sorted(self.managers),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Org:
        """Rebuild an org written by :meth:`to_dict` (``children`` is relinked by the tree)."""
        return cls(
            org_id=data["orgId"],
            name=data["name"],
            parent_id=data["parentId"],
            agents=int(data["agents"]),
            compute=int(data["compute"]),
            storage=int(data["storage"]),
            subtree=WindowCounter.from_row(data["subtree"]),
            direct=WindowCounter.from_row(data["direct"]),
            alerts=marks_from_row(data.get("alerts")),  # absent in state written before org alerts
            managers=set(data.get("managers", ())),  # absent in state written before managers
        )


_Getter = Callable[[Org], int]
_RESOURCES: tuple[tuple[str, _Getter], ...] = (
    ("agents", lambda o: o.agents),
    ("computeHours", lambda o: o.compute),
    ("storageGB", lambda o: o.storage),
)


class OrgTree:
    """Every org, indexed by id, with the operations that keep the tree's caps nested.

    Args:
        changed: The ledger's set of entity keys to persist; every mutation adds to it.
    """

    def __init__(self, changed: set[EntityKey]) -> None:
        self.orgs: dict[str, Org] = {}
        self._changed = changed

    def get(self, org_id: str) -> Org:
        """The org ``org_id``.

        Raises:
            InvalidInput: No such org.
        """
        org = self.orgs.get(org_id)
        if org is None:
            raise InvalidInput(f"org {org_id!r} does not exist", {"orgId": org_id}, field="orgId")
        return org

    def chain(self, org_id: str) -> list[Org]:
        """``org_id`` followed by each ancestor up to the root."""
        out: list[Org] = []
        node: str | None = org_id
        while node is not None:
            org = self.get(node)
            out.append(org)
            node = org.parent_id
            if len(out) > len(self.orgs):
                raise InvalidInput("the org tree has a cycle", {"orgId": org_id}, field="orgId")
        return out

    def descendants(self, org_id: str) -> list[Org]:
        """Every org below ``org_id``, depth first in creation order."""
        out: list[Org] = []
        stack = list(reversed(self.get(org_id).children))
        while stack:
            org = self.orgs[stack.pop()]
            out.append(org)
            stack.extend(reversed(org.children))
        return out

    def create(
        self,
        org_id: str,
        name: str,
        parent_id: str | None,
        agents: int,
        compute_hours: float,
        storage_gb: float,
        starts: WindowStarts,
    ) -> Organization:
        """Add an org under ``parent_id`` (``None``: a new root).

        Raises:
            InvalidInput: Duplicate id, unknown parent, a cycle, or caps that do not fit in the
                parent; nothing changes.
        """
        check_id(org_id, "orgId")
        if org_id in self.orgs:
            raise Conflict(f"org {org_id!r} already exists", field="orgId")
        if parent_id is not None:
            check_id(parent_id, "parentId")
            if parent_id not in self.orgs:
                raise InvalidInput(f"parent org {parent_id!r} does not exist", field="parentId")
            if any(o.org_id == org_id for o in self.chain(parent_id)):
                raise InvalidInput("an org cannot be its own ancestor", field="parentId")
        caps = (
            check_count(agents, "agents"),
            to_micro(compute_hours, field="computeHours"),
            to_micro(storage_gb, field="storageGB"),
        )
        self._check_fits(None, org_id, parent_id, caps, starts)
        org = Org(
            org_id,
            name,
            parent_id,
            *caps,
            subtree=WindowCounter(starts.monthly),
            direct=WindowCounter(starts.monthly),
        )
        self.orgs[org_id] = org
        if parent_id is not None:
            self.orgs[parent_id].children.append(org_id)
        self._changed.add(("org", org_id))
        return org.view(starts)

    def add_manager(self, org_id: str, user_id: str) -> None:
        """Remember that ``user_id`` manages ``org_id`` (see :attr:`Org.managers`)."""
        org = self.get(org_id)
        if user_id not in org.managers:
            org.managers.add(user_id)
            self._changed.add(("org", org_id))

    def patch(
        self,
        org_id: str,
        agents: int | None,
        compute_hours: float | None,
        storage_gb: float | None,
        starts: WindowStarts,
    ) -> Organization:
        """Change an org's caps; absent values stay as they are.

        Raises:
            InvalidInput: The new caps exceed the parent's room, fall below Σ children's caps,
                or fall below the subtree's usage this month; nothing changes.
        """
        org = self.get(org_id)
        caps = (
            org.agents if agents is None else check_count(agents, "agents"),
            org.compute if compute_hours is None else to_micro(compute_hours, field="computeHours"),
            org.storage if storage_gb is None else to_micro(storage_gb, field="storageGB"),
        )
        self._check_fits(org, org_id, org.parent_id, caps, starts)
        org.agents, org.compute, org.storage = caps
        self._changed.add(("org", org_id))
        return org.view(starts)

    def hierarchy(self, org_id: str, starts: WindowStarts) -> OrganizationHierarchy:
        """The API's ``OrganizationHierarchy``: ancestors root first; a root has no siblings."""
        org = self.get(org_id)
        ancestors = self.chain(org_id)[1:]
        siblings: list[Org] = []
        if org.parent_id is not None:
            parent = self.orgs[org.parent_id]
            siblings = [self.orgs[c] for c in parent.children if c != org_id]
        return OrganizationHierarchy(
            org=org.view(starts),
            ancestors=[a.view(starts) for a in reversed(ancestors)],
            descendants=[d.view(starts) for d in self.descendants(org_id)],
            siblings=[s.view(starts) for s in siblings],
        )

    def relink(self) -> None:
        """Rebuild ``children`` from ``parent_id`` after a restore and refuse broken trees.

        Raises:
            InvalidInput: A parent is missing or the parents form a cycle.
        """
        for org in self.orgs.values():
            org.children = []
        for org in self.orgs.values():
            if org.parent_id is not None:
                self.get(org.parent_id).children.append(org.org_id)
        for org_id in self.orgs:
            self.chain(org_id)

    def _check_fits(
        self,
        org: Org | None,
        org_id: str,
        parent_id: str | None,
        caps: tuple[int, int, int],
        starts: WindowStarts,
    ) -> None:
        if parent_id is not None:
            parent = self.orgs[parent_id]
            siblings = [self.orgs[c] for c in parent.children if c != org_id]
            for (name, get), cap in zip(_RESOURCES, caps, strict=True):
                if cap > get(parent):
                    raise _refuse(org_id, name, f"exceeds parent {parent_id!r}'s cap", cap, parent)
                if sum(get(s) for s in siblings) + cap > get(parent):
                    raise _refuse(
                        org_id, name, f"with its siblings exceeds parent {parent_id!r}", cap, parent
                    )
        if org is None:
            return
        for (name, get), cap in zip(_RESOURCES, caps, strict=True):
            below = sum(get(self.orgs[c]) for c in org.children)
            if below > cap:
                raise Conflict(
                    f"org {org_id!r}: {name} would be below the sum of its children's caps",
                    {"orgId": org_id, "childrenTotal": _unit(name, below)},
                    field=name,
                )
        held = org.subtree.held(starts.monthly)
        for name, cap, used in (("agents", caps[0], held[0]), ("computeHours", caps[1], held[1])):
            if cap < used:
                raise Conflict(
                    f"org {org_id!r}: {name} would be below this month's usage",
                    {"orgId": org_id, "used": _unit(name, used)},
                    field=name,
                )


def _unit(name: str, value: int) -> int | float:
    return value if name == "agents" else from_micro(value)


def _refuse(org_id: str, name: str, why: str, cap: int, parent: Org) -> Conflict:
    limit = next(get(parent) for n, get in _RESOURCES if n == name)
    return Conflict(
        f"org {org_id!r}: {name} {why}",
        {
            "orgId": org_id,
            "requested": _unit(name, cap),
            "parentId": parent.org_id,
            "parentCap": _unit(name, limit),
        },
        field=name,
    )
