"""Usage over time: what was charged to each user, team and org, hour by hour.

The quota windows (:mod:`rlm.quotas.counters`) only know the current day, week and month as
totals, and the store's journal (:mod:`rlm.quotas.journal`) holds whole entities and is emptied
at every compaction, so neither can say *when* usage happened. :class:`UsageBook` keeps, per
level (``user``, ``team``, ``org``) and id, one bucket per UTC hour in which something was
charged: agent calls and compute hours when a reservation is settled, tokens and cost when a
language-model token hold is. Each bucket is a ledger entity of kind ``usage`` (key
``level:id:YYYYMMDDHH``), so it is stored, journalled, compacted and shared across instances
by both state stores exactly like the counters it mirrors — no separate table, no second write.

Buckets older than :data:`USAGE_RETENTION` are dropped on the engine's heartbeat
(:meth:`UsageBook.prune`): long enough for the longest window (a 31-day month) and the one
before it started.

Example:
    >>> from datetime import UTC, datetime
    >>> book = UsageBook(set())
    >>> at = datetime(2028, 2, 29, 13, 20, tzinfo=UTC)
    >>> book.charge([("user", "ada")], at, agent_calls=3)
    >>> [b.agent_calls for b in book.series("user", "ada", at.replace(hour=0), at, "day")]
    [3]
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, get_args

from rlm.quotas.changes import EntityKey

__all__ = [
    "BUCKETS",
    "LEVELS",
    "USAGE_RETENTION",
    "Bucket",
    "charged_levels",
    "Level",
    "UsageBook",
    "UsageBucket",
    "hour_of",
]

Level = Literal["user", "team", "org"]
Bucket = Literal["hour", "day"]

LEVELS: Final[tuple[Level, ...]] = get_args(Level)
BUCKETS: Final[tuple[Bucket, ...]] = get_args(Bucket)

#: How long hourly buckets are kept: a whole month window plus the days before it began.
USAGE_RETENTION: Final = timedelta(days=62)

_HOUR = timedelta(hours=1)
_STEP: Final[dict[Bucket, timedelta]] = {"hour": _HOUR, "day": timedelta(days=1)}


def hour_of(at: datetime) -> datetime:
    """The start of the UTC hour containing ``at``."""
    utc = at.astimezone(UTC)
    return utc.replace(minute=0, second=0, microsecond=0)


def charged_levels(
    user_id: str, team_id: str | None, org_ids: Iterable[str]
) -> list[tuple[str, str]]:
    """The ``(level, id)`` pairs a charge of ``user_id`` lands on: the user, its team's pool
    (if it drew on one) and every org of its chain (each org's usage is its subtree's)."""
    levels = [("user", user_id)]
    if team_id is not None:
        levels.append(("team", team_id))
    levels.extend(("org", org_id) for org_id in org_ids)
    return levels


def _key(level: str, entity_id: str, stamp: str) -> str:
    # Ids may contain ":" but levels and stamps do not: the key reads back unambiguously.
    return f"{level}:{entity_id}:{stamp}"


def _stamp(hour: datetime) -> str:
    return hour.strftime("%Y%m%d%H")


@dataclass(slots=True)
class UsageBucket:
    """What was charged to one level in one bucket of time.

    Attributes:
        start: The bucket's first instant (UTC).
        agent_calls: Agent calls settled.
        compute_micro: Compute settled, in millionths of an hour.
        tokens: Language-model tokens settled (input + output).
        cost_nano: Language-model cost settled, in billionths of a dollar.
    """

    start: datetime
    agent_calls: int = 0
    compute_micro: int = 0
    tokens: int = 0
    cost_nano: int = 0

    def add(self, other: UsageBucket) -> None:
        """Add ``other``'s amounts to this bucket."""
        self.agent_calls += other.agent_calls
        self.compute_micro += other.compute_micro
        self.tokens += other.tokens
        self.cost_nano += other.cost_nano

    def to_dict(self, level: str, entity_id: str) -> dict[str, Any]:
        """The stored form (the level and id travel with it so a row reads on its own)."""
        return {
            "level": level,
            "id": entity_id,
            "start": self.start.isoformat(),
            "agentCalls": self.agent_calls,
            "computeMicro": self.compute_micro,
            "tokens": self.tokens,
            "costNano": self.cost_nano,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UsageBucket:
        """Read :meth:`to_dict`'s form."""
        return cls(
            start=datetime.fromisoformat(data["start"]),
            agent_calls=int(data["agentCalls"]),
            compute_micro=int(data["computeMicro"]),
            tokens=int(data["tokens"]),
            cost_nano=int(data["costNano"]),
        )


class UsageBook:
    """Hourly usage buckets of every level, recording the keys it changes.

    Args:
        changed: The ledger state's set of changed entity keys (shared).
    """

    def __init__(self, changed: set[EntityKey]) -> None:
        self._changed = changed
        # (level, id) -> hour -> bucket; hours inserted in time order as usage arrives.
        self.buckets: dict[tuple[str, str], dict[datetime, UsageBucket]] = {}
        # Entity key -> where its bucket lives: a store asks by key on every change, and
        # parsing the key's time back (strptime) would cost more than the charge itself.
        self._where: dict[str, tuple[str, str, datetime]] = {}

    def charge(
        self,
        levels: Iterable[tuple[str, str]],
        at: datetime,
        *,
        agent_calls: int = 0,
        compute_micro: int = 0,
        tokens: int = 0,
        cost_nano: int = 0,
    ) -> None:
        """Add an amount to the hour containing ``at`` of every ``(level, id)`` given."""
        if not (agent_calls or compute_micro or tokens or cost_nano):
            return
        hour = hour_of(at)
        stamp = _stamp(hour)
        amount = UsageBucket(hour, agent_calls, compute_micro, tokens, cost_nano)
        for level, entity_id in levels:
            hours = self.buckets.setdefault((level, entity_id), {})
            bucket = hours.get(hour)
            key = _key(level, entity_id, stamp)
            if bucket is None:
                bucket = hours[hour] = UsageBucket(hour)
                self._where[key] = (level, entity_id, hour)
            bucket.add(amount)
            self._changed.add(("usage", key))

    def series(
        self, level: str, entity_id: str, start: datetime, end: datetime, bucket: Bucket
    ) -> list[UsageBucket]:
        """Every bucket of ``bucket`` size from ``start`` up to ``end`` (exclusive), empty
        ones included, oldest first.

        ``start`` must fall on a bucket boundary (window starts are midnights).
        """
        step = _STEP[bucket]
        out: list[UsageBucket] = []
        index: dict[datetime, UsageBucket] = {}
        at = start
        while at < end:
            index[at] = UsageBucket(at)
            out.append(index[at])
            at += step
        for hour, used in self.buckets.get((level, entity_id), {}).items():
            if start <= hour < end:
                slot = start + ((hour - start) // step) * step
                index[slot].add(used)
        return out

    def prune(self, before: datetime) -> int:
        """Drop the buckets of hours that began before ``before``; returns how many."""
        dropped = 0
        for (level, entity_id), hours in list(self.buckets.items()):
            old = [h for h in hours if h < before]
            for hour in old:
                del hours[hour]
                key = _key(level, entity_id, _stamp(hour))
                self._where.pop(key, None)
                self._changed.add(("usage", key))
            dropped += len(old)
            if not hours:
                del self.buckets[(level, entity_id)]
        return dropped

    def encode(self, key: str) -> dict[str, Any] | None:
        """The stored form of the bucket ``key`` names, or ``None`` if it no longer exists."""
        where = self._where.get(key)
        if where is None:
            return None
        level, entity_id, hour = where
        found = self.buckets.get((level, entity_id), {}).get(hour)
        return None if found is None else found.to_dict(level, entity_id)

    def stored_keys(self) -> list[str]:
        """The key of every bucket held."""
        return list(self._where)

    def load(self, rows: dict[str, dict[str, Any]]) -> None:
        """Fill the book from stored rows (any order), keeping hours in time order."""
        loaded = sorted(
            ((d["level"], d["id"], UsageBucket.from_dict(d)) for d in rows.values()),
            key=lambda row: row[2].start,
        )
        for level, entity_id, bucket in loaded:
            self.buckets.setdefault((level, entity_id), {})[bucket.start] = bucket
            self._where[_key(level, entity_id, _stamp(bucket.start))] = (
                level,
                entity_id,
                bucket.start,
            )
