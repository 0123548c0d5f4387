"""The ledger's org tree: caps, placement and the API's views; see :mod:`rlm.quotas.orgs`."""

from __future__ import annotations

from rlm.errors import InvalidInput
from rlm.models.quotas import Organization, OrganizationHierarchy
from rlm.quotas.ledger_core import LedgerCore

__all__ = ["LedgerOrgs"]


class LedgerOrgs(LedgerCore):
    """Orgs: the enterprise part of :class:`~rlm.quotas.ledger.QuotaLedger`."""

    def create_org(
        self,
        org_id: str,
        name: str = "",
        parent_id: str | None = None,
        agents: int = 0,
        compute_hours: float = 0.0,
        storage_gb: float = 0.0,
    ) -> Organization:
        """Add an org to the tree; see :meth:`OrgTree.create`."""
        starts = self._starts()
        return self._state.orgs.create(
            org_id, name, parent_id, agents, compute_hours, storage_gb, starts
        )

    def patch_org(
        self,
        org_id: str,
        agents: int | None = None,
        compute_hours: float | None = None,
        storage_gb: float | None = None,
    ) -> Organization:
        """Change an org's caps, validated against the whole tree; see :meth:`OrgTree.patch`."""
        return self._state.orgs.patch(org_id, agents, compute_hours, storage_gb, self._starts())

    def governing_orgs(self, kind: str, entity_id: str) -> list[str]:
        """The org a user, team or org belongs to, then each ancestor up to the root.

        Managers of any org in the list govern the entity (tenancy checks of the API).

        Args:
            kind: ``user``, ``team`` or ``org``.
            entity_id: Its id.

        Returns:
            Org ids, nearest first; empty for a user or team in no org (or a user never seen).

        Raises:
            InvalidInput: An unknown kind, team or org.
        """
        if kind == "user":
            account = self._state.users.get(entity_id)
            org_id = None if account is None else account.org_id
        elif kind == "team":
            org_id = self._state.teams.get(entity_id).org_id
        elif kind == "org":
            org_id = entity_id
        else:
            raise InvalidInput(f"unknown kind {kind!r}", field="kind")
        return [] if org_id is None else [o.org_id for o in self._state.orgs.chain(org_id)]

    def organization(self, org_id: str) -> Organization:
        """The API's ``Organization`` with this month's subtree usage."""
        return self._state.orgs.get(org_id).view(self._starts())

    def hierarchy(self, org_id: str) -> OrganizationHierarchy:
        """The API's ``OrganizationHierarchy`` (ancestors root first)."""
        return self._state.orgs.hierarchy(org_id, self._starts())
