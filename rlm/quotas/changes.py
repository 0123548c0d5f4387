"""The unit of persistence: entities changed by a ledger call, as rows for the state store.

The ledger's state is a set of entities, each named by an :data:`EntityKey` ``(kind, key)`` and
encoded as a JSON-ready dict. A mutating call records the keys it touched; the store then writes
just those rows (or deletes the ones that no longer exist) in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ChangeSet",
    "EntityKey",
    "KINDS",
    "Snapshot",
]

EntityKey = tuple[str, str]

# Every kind of entity the ledger persists; a snapshot has one mapping per kind.
KINDS: tuple[str, ...] = (
    "config",
    "event",
    "member",
    "meta",
    "org",
    "reservation",
    "team",
    "token_hold",
    "transfer",
    "usage",
    "user",
)

Snapshot = dict[str, dict[str, dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class ChangeSet:
    """Rows to write and rows to delete, as one atomic step.

    Attributes:
        upserts: ``(kind, key, data)`` of every entity created or changed.
        deletes: ``(kind, key)`` of every entity that no longer exists.
    """

    upserts: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    deletes: list[EntityKey] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.upserts or self.deletes)
