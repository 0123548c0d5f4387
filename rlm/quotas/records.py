"""What the ledger hands back: reservations, token holds, their settlements and transfer receipts.

All of them are frozen dataclasses of plain values, so they pickle across a Ray actor boundary and
serialise to JSON for the state store.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rlm.quotas.counters import from_micro, from_nano
from rlm.quotas.settings import Tier

__all__ = ["Reservation", "Settlement", "TokenHold", "TokenSettlement", "TransferReceipt"]


@dataclass(frozen=True, slots=True)
class Reservation:
    """Planned agent calls held on every level for one task, plus its concurrency lease.

    Attributes:
        reservation_id: The id to reconcile or release.
        task_id: The task this reservation admits.
        user_id: Who is charged.
        agents: Agent calls held on the user's windows, team, member and orgs.
        compute_micro: Compute held, micro-hours (0 unless the caller planned some).
        concurrent_agents: Agents the task runs at once; held on the user's concurrency lease.
        team_id: The team pool charged, if any.
        org_ids: The org charged, then each ancestor up to the root.
        created_at: When it was made (for lease reaping).
    """

    reservation_id: str
    task_id: str
    user_id: str
    agents: int
    compute_micro: int
    concurrent_agents: int
    team_id: str | None
    org_ids: tuple[str, ...]
    created_at: datetime

    @property
    def compute_hours(self) -> float:
        """Compute held, in hours."""
        return from_micro(self.compute_micro)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "reservationId": self.reservation_id,
            "taskId": self.task_id,
            "userId": self.user_id,
            "agents": self.agents,
            "computeMicro": self.compute_micro,
            "concurrentAgents": self.concurrent_agents,
            "teamId": self.team_id,
            "orgIds": list(self.org_ids),
            "createdAt": self.created_at.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Reservation:
        """Rebuild a reservation written by :meth:`to_dict`."""
        return cls(
            reservation_id=data["reservationId"],
            task_id=data["taskId"],
            user_id=data["userId"],
            agents=int(data["agents"]),
            compute_micro=int(data["computeMicro"]),
            concurrent_agents=int(data["concurrentAgents"]),
            team_id=data["teamId"],
            org_ids=tuple(data["orgIds"]),
            created_at=datetime.fromisoformat(data["createdAt"]),
        )


@dataclass(frozen=True, slots=True)
class Settlement:
    """The outcome of reconciling (or releasing) a reservation; returned again on repeats.

    Attributes:
        reservation_id: The reservation settled.
        task_id: Its task.
        user_id: Who was charged.
        agents_reserved: Agent calls it had held.
        agent_calls: Agent calls charged (may exceed ``agents_reserved``: actual is charged).
        compute_micro: Compute charged, micro-hours.
        released: True when settled by ``release`` or the reaper with nothing charged.
        settled_at: When it was settled.
    """

    reservation_id: str
    task_id: str
    user_id: str
    agents_reserved: int
    agent_calls: int
    compute_micro: int
    released: bool
    settled_at: datetime

    @property
    def compute_hours(self) -> float:
        """Compute charged, in hours."""
        return from_micro(self.compute_micro)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "reservationId": self.reservation_id,
            "taskId": self.task_id,
            "userId": self.user_id,
            "agentsReserved": self.agents_reserved,
            "agentCalls": self.agent_calls,
            "computeMicro": self.compute_micro,
            "released": self.released,
            "settledAt": self.settled_at.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Settlement:
        """Rebuild a settlement written by :meth:`to_dict`."""
        return cls(
            reservation_id=data["reservationId"],
            task_id=data["taskId"],
            user_id=data["userId"],
            agents_reserved=int(data["agentsReserved"]),
            agent_calls=int(data["agentCalls"]),
            compute_micro=int(data["computeMicro"]),
            released=bool(data["released"]),
            settled_at=datetime.fromisoformat(data["settledAt"]),
        )


@dataclass(frozen=True, slots=True)
class TransferReceipt:
    """A completed transfer of allocation between two members of a team.

    Attributes:
        transfer_id: The idempotency key, or a generated id when none was given.
        team_id: The team.
        from_user_id: The giver.
        to_user_id: The receiver.
        agents: Agent calls moved.
        compute_micro: Compute moved, micro-hours.
        from_agents_allocated: The giver's agent allocation afterwards.
        from_compute_micro_allocated: The giver's compute allocation afterwards, micro-hours.
        to_agents_allocated: The receiver's agent allocation afterwards.
        to_compute_micro_allocated: The receiver's compute allocation afterwards, micro-hours.
        transferred_at: When it happened.
    """

    transfer_id: str
    team_id: str
    from_user_id: str
    to_user_id: str
    agents: int
    compute_micro: int
    from_agents_allocated: int
    from_compute_micro_allocated: int
    to_agents_allocated: int
    to_compute_micro_allocated: int
    transferred_at: datetime

    @property
    def compute_hours(self) -> float:
        """Compute moved, in hours."""
        return from_micro(self.compute_micro)

    def same_request(
        self, team_id: str, from_user_id: str, to_user_id: str, agents: int, compute_micro: int
    ) -> bool:
        """Whether a retried request carries the body this receipt was made for."""
        return (team_id, from_user_id, to_user_id, agents, compute_micro) == (
            self.team_id,
            self.from_user_id,
            self.to_user_id,
            self.agents,
            self.compute_micro,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "transferId": self.transfer_id,
            "teamId": self.team_id,
            "fromUserId": self.from_user_id,
            "toUserId": self.to_user_id,
            "agents": self.agents,
            "computeMicro": self.compute_micro,
            "fromAgentsAllocated": self.from_agents_allocated,
            "fromComputeMicroAllocated": self.from_compute_micro_allocated,
            "toAgentsAllocated": self.to_agents_allocated,
            "toComputeMicroAllocated": self.to_compute_micro_allocated,
            "transferredAt": self.transferred_at.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TransferReceipt:
        """Rebuild a receipt written by :meth:`to_dict`."""
        return cls(
            transfer_id=data["transferId"],
            team_id=data["teamId"],
            from_user_id=data["fromUserId"],
            to_user_id=data["toUserId"],
            agents=int(data["agents"]),
            compute_micro=int(data["computeMicro"]),
            from_agents_allocated=int(data["fromAgentsAllocated"]),
            from_compute_micro_allocated=int(data["fromComputeMicroAllocated"]),
            to_agents_allocated=int(data["toAgentsAllocated"]),
            to_compute_micro_allocated=int(data["toComputeMicroAllocated"]),
            transferred_at=datetime.fromisoformat(data["transferredAt"]),
        )


@dataclass(frozen=True, slots=True)
class TokenHold:
    """The worst-case tokens of one language-model request, held until it is settled.

    Attributes:
        hold_id: The id to settle or release.
        user_id: Who is charged.
        tier: The tier presented with the hold (for a user the ledger has not seen yet).
        tokens: Tokens held against the user's ``dailyTokenLimit``.
        team_id: The team charged on settlement, if any.
        org_ids: The org charged on settlement, then each ancestor up to the root.
        task_id: The task the request belongs to, if any (a task makes many requests).
        durable: Whether the hold is stored: only holds that count against a limit are, so a
            user without a limit pays no write for the hold itself.
        created_at: When it was made (for reaping).
    """

    hold_id: str
    user_id: str
    tier: Tier
    tokens: int
    team_id: str | None
    org_ids: tuple[str, ...]
    task_id: str | None
    durable: bool
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "holdId": self.hold_id,
            "userId": self.user_id,
            "tier": self.tier,
            "tokens": self.tokens,
            "teamId": self.team_id,
            "orgIds": list(self.org_ids),
            "taskId": self.task_id,
            "createdAt": self.created_at.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TokenHold:
        """Rebuild a (stored, hence durable) hold written by :meth:`to_dict`."""
        return cls(
            hold_id=data["holdId"],
            user_id=data["userId"],
            tier=data["tier"],
            tokens=int(data["tokens"]),
            team_id=data["teamId"],
            org_ids=tuple(data["orgIds"]),
            task_id=data["taskId"],
            durable=True,
            created_at=datetime.fromisoformat(data["createdAt"]),
        )


@dataclass(frozen=True, slots=True)
class TokenSettlement:
    """The outcome of settling (or releasing) a token hold; returned again on repeats.

    Attributes:
        hold_id: The hold settled.
        user_id: Who was charged.
        task_id: Its task, if any.
        tokens_held: Tokens the hold had held.
        input_tokens: Input (prompt) tokens charged.
        output_tokens: Output (completion) tokens charged.
        cost_nano: Cost charged, nano-dollars.
        released: True when released (or reaped) with nothing charged.
        settled_at: When it was settled.
    """

    hold_id: str
    user_id: str
    task_id: str | None
    tokens_held: int
    input_tokens: int
    output_tokens: int
    cost_nano: int
    released: bool
    settled_at: datetime

    @property
    def tokens(self) -> int:
        """Tokens charged (input + output)."""
        return self.input_tokens + self.output_tokens

    @property
    def cost_usd(self) -> float:
        """Cost charged, in dollars."""
        return from_nano(self.cost_nano)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "holdId": self.hold_id,
            "userId": self.user_id,
            "taskId": self.task_id,
            "tokensHeld": self.tokens_held,
            "inputTokens": self.input_tokens,
            "outputTokens": self.output_tokens,
            "costNano": self.cost_nano,
            "released": self.released,
            "settledAt": self.settled_at.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TokenSettlement:
        """Rebuild a settlement written by :meth:`to_dict`."""
        return cls(
            hold_id=data["holdId"],
            user_id=data["userId"],
            task_id=data["taskId"],
            tokens_held=int(data["tokensHeld"]),
            input_tokens=int(data["inputTokens"]),
            output_tokens=int(data["outputTokens"]),
            cost_nano=int(data["costNano"]),
            released=bool(data["released"]),
            settled_at=datetime.fromisoformat(data["settledAt"]),
        )
