"""Language-model tokens: the worst case held before a request, the usage settled after.

Each language-model request holds its worst-case tokens before it is sent
(:func:`hold_tokens`) and is settled to the provider's reported usage after
(:func:`settle_token_hold`), exactly once; a request that never ran is released, charging
nothing. Settlement records tokens (input + output) and cost on the same levels an agent
reservation charges (see :func:`~rlm.quotas.admission.resolve_payers`): the user's daily,
weekly and monthly windows, the user's team, and the user's org and every ancestor.

Only the user's optional ``dailyTokenLimit`` refuses anything: a hold is refused when the
tokens settled today plus the user's open holds plus the new hold would exceed it. A hold of a
user without a limit has nothing to protect, so it is kept in memory only (no journal write);
a hold against a limit is stored like a reservation. Either way, open holds are released when
the engine restarts, as their requests died with it.

Overspend rule (as for agent calls): usage above the hold is charged in full, since the tokens
were spent; the day then refuses further holds until it resets.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Final

from rlm.quotas.accounts import UserAccount, UserLimits
from rlm.quotas.admission import charged_counters, quota_exceeded, resolve_payers
from rlm.quotas.ids import random_hex
from rlm.quotas.inputs import check_count, check_id
from rlm.quotas.records import TokenHold, TokenSettlement
from rlm.quotas.settings import Tier, parse_tier
from rlm.quotas.state import LedgerState
from rlm.quotas.usage import charged_levels
from rlm.quotas.windows import WindowStarts

__all__ = ["MAX_TOKENS", "hold_tokens", "settle_token_hold", "stale_token_holds"]

#: Tokens one request may hold or report: far above any model's context, far below 2**63.
MAX_TOKENS: Final[int] = 10**12


def hold_tokens(
    state: LedgerState,
    defaults: Mapping[Tier, UserLimits],
    starts: WindowStarts,
    user_id: str,
    tokens: int,
    *,
    tier: str,
    team_id: str | None,
    org_id: str | None,
    task_id: str | None,
) -> TokenHold:
    """Hold ``tokens`` for ``user_id`` if its ``dailyTokenLimit`` has room; see the module.

    Raises:
        QuotaExceeded: The daily token limit has no room (resource ``tokens``, period
            ``daily``); nothing changed.
        InvalidInput: Malformed arguments, unknown team or org, not a team member, several
            teams and none named, or an org other than the user's.
    """
    user_id = check_id(user_id, "userId")
    tokens = check_count(tokens, "tokens", minimum=1, maximum=MAX_TOKENS)
    parsed_tier = parse_tier(tier)
    if task_id is not None:
        check_id(task_id, "taskId")
    if org_id is not None:
        check_id(org_id, "orgId")
    if team_id is None:  # a member always draws on its team's pool
        team_id = state.teams.team_of(user_id)
    else:
        check_id(team_id, "teamId")
    account = state.users.get(user_id)
    payers = resolve_payers(user_id, account, team_id, org_id, state.teams, state.orgs)
    limits = defaults[parsed_tier] if account is None else account.limits(defaults, parsed_tier)
    limit = limits.daily_tokens
    if limit is not None:
        used = 0 if account is None else account.windows["daily"].tokens(starts.daily)[0]
        held = used + state.tokens_held.get(user_id, 0)
        if held + tokens > limit:
            raise quota_exceeded(
                "user", user_id, "tokens", "daily", limit, held, tokens, starts.reset("daily")
            )
    hold = TokenHold(
        hold_id=f"tok_{random_hex()}",
        user_id=user_id,
        tier=parsed_tier,
        tokens=tokens,
        team_id=team_id,
        org_ids=payers.org_ids,
        task_id=task_id,
        durable=limit is not None,
        created_at=starts.now,
    )
    state.open_token_hold(hold)
    return hold


def settle_token_hold(
    state: LedgerState,
    hold: TokenHold,
    input_tokens: int,
    output_tokens: int,
    cost_nano: int,
    starts: WindowStarts,
    *,
    released: bool = False,
) -> TokenSettlement:
    """Close the open ``hold``, charging the usage given (nothing when ``released``).

    The caller has checked that the hold is open and the amounts are valid.
    """
    tokens = input_tokens + output_tokens
    if tokens or cost_nano:
        account = state.users.get(hold.user_id)
        if account is None:
            account = state.users[hold.user_id] = UserAccount.new(hold.user_id, hold.tier, starts)
        counters = charged_counters(
            account, hold.team_id, hold.org_ids, state.teams, state.orgs, starts, member=False
        )
        for counter, start in counters:
            counter.charge_tokens(start, tokens, cost_nano)
        state.changed.add(("user", hold.user_id))
        if hold.team_id is not None:
            state.changed.add(("team", hold.team_id))
        state.changed.update(("org", o) for o in hold.org_ids)
        state.usage.charge(
            charged_levels(hold.user_id, hold.team_id, hold.org_ids),
            starts.now,
            tokens=tokens,
            cost_nano=cost_nano,
        )
    settlement = TokenSettlement(
        hold_id=hold.hold_id,
        user_id=hold.user_id,
        task_id=hold.task_id,
        tokens_held=hold.tokens,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost_nano=cost_nano,
        released=released,
        settled_at=starts.now,
    )
    state.close_token_hold(hold, settlement)
    return settlement


def stale_token_holds(state: LedgerState, cutoff: datetime) -> list[TokenHold]:
    """Open holds made at or before ``cutoff``, oldest first."""
    stale = (h for h in state.token_holds.values() if h.created_at <= cutoff)
    return sorted(stale, key=lambda h: h.created_at)
