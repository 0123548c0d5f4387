"""Managers: never their own limits raised, never a user outside their org, and each change
checked and applied in one ledger call, so two orgs' managers racing never split a user."""

from __future__ import annotations

import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from rlm.errors import Forbidden, InvalidInput
from rlm.models.quotas import QuotaConfig
from rlm.quotas import FrozenClock, Manager, QuotaLedger, QuotaLedgerService
from rlm.quotas.orgs import Org

NOW = datetime(2028, 2, 29, 12, tzinfo=UTC)


def _config(user_id: str, daily: int, **extra: Any) -> QuotaConfig:
    return QuotaConfig.model_validate(
        {
            "userId": user_id,
            "dailyAgentLimit": daily,
            "weeklyAgentLimit": 10 * daily,
            "monthlyAgentLimit": 40 * daily,
            "dailyComputeHours": 1.0,
            "maxConcurrentAgents": 5,
            "maxStorageGB": 1.0,
            **extra,
        }
    )


def _rule(excinfo: pytest.ExceptionInfo[Forbidden]) -> str:
    return str(excinfo.value.details["rule"])


@pytest.fixture
def ledger() -> QuotaLedger:
    ledger = QuotaLedger(FrozenClock(NOW))
    ledger.create_org("acme", agents=10_000, compute_hours=100)
    ledger.create_org("acme-eng", parent_id="acme", agents=5_000, compute_hours=50)
    ledger.create_org("globex", agents=10_000, compute_hours=100)
    return ledger


ACME = Manager("ada", "acme", "admin")
ENG = Manager("eve", "acme-eng", "admin")
GLOBEX = Manager("gus", "globex", "admin")


def test_a_manager_never_raises_its_own_limits(ledger: QuotaLedger) -> None:
    defaults = ledger.user_config("ada", tier="admin")
    above = _config("ada", defaults.daily_agent_limit + 1)
    with pytest.raises(Forbidden) as excinfo:
        ledger.managed_set_user_config(ACME, above)
    assert _rule(excinfo) == "self_raise"
    assert "dailyAgentLimit" in excinfo.value.details["fields"]
    assert ledger.user_config("ada", tier="admin") == defaults  # nothing changed
    assert ledger.governing_orgs("user", "ada") == []  # not even placed
    # Lowering is fine (and places the manager's own user in its org)...
    lower = _config("ada", 10)
    assert ledger.managed_set_user_config(ACME, lower).daily_agent_limit == 10
    assert ledger.governing_orgs("user", "ada") == ["acme"]
    # ...and raising back is refused: "own limits" are those in force now.
    with pytest.raises(Forbidden):
        ledger.managed_set_user_config(ACME, _config("ada", 11))
    # A token limit: unlimited -> a number lowers; a number -> unlimited raises.
    capped = _config("ada", 10, dailyTokenLimit=1000)
    ledger.managed_set_user_config(ACME, capped)
    with pytest.raises(Forbidden) as excinfo:
        ledger.managed_set_user_config(ACME, _config("ada", 10))
    assert excinfo.value.details["fields"] == ["dailyTokenLimit"]
    # Nor may a peer, another manager of its org (whom it could raise in turn).
    peer = Manager("root-admin", "acme", "admin")
    with pytest.raises(Forbidden) as excinfo:
        ledger.managed_set_user_config(peer, _config("ada", 50))
    assert _rule(excinfo) == "peer_raise"
    # An operator (the ledger itself, no manager) may.
    assert ledger.set_user_config(_config("ada", 50)).daily_agent_limit == 50


def test_peer_managers_never_raise_each_other(ledger: QuotaLedger) -> None:
    bob = Manager("bob", "acme", "admin")
    # ada has not managed yet: bob may raise her (she is a user of acme to him)...
    ledger.managed_set_user_config(ACME, _config("ada", 5))  # now ada has managed acme
    ledger.managed_set_user_config(bob, _config("bob", 5))  # and so has bob
    # ...but once both have acted, neither raises the other, by any of the three routes.
    with pytest.raises(Forbidden) as excinfo:
        ledger.managed_set_user_config(bob, _config("ada", 6))
    assert _rule(excinfo) == "peer_raise" and excinfo.value.details["userId"] == "ada"
    with pytest.raises(Forbidden) as excinfo:
        ledger.managed_set_user_config(ACME, _config("bob", 6))
    assert _rule(excinfo) == "peer_raise"
    assert ledger.user_config("ada").daily_agent_limit == 5  # nothing changed
    assert ledger.user_config("bob").daily_agent_limit == 5
    ledger.managed_create_team(ACME, "t", "T", 100, 10.0)
    ledger.managed_add_member(ACME, "t", "bob", agents=20)  # a newcomer's cap only limits
    with pytest.raises(Forbidden) as excinfo:
        ledger.managed_add_member(ACME, "t", "bob", agents=21)
    assert _rule(excinfo) == "peer_raise"
    ledger.managed_add_member(ACME, "t", "cyd", agents=30)
    with pytest.raises(Forbidden) as excinfo:
        ledger.managed_transfer(ACME, "t", "cyd", "bob", agents=5)
    assert _rule(excinfo) == "peer_raise"
    # Lowering a peer is allowed, and so is raising a plain user.
    assert ledger.managed_set_user_config(ACME, _config("bob", 4)).daily_agent_limit == 4
    assert ledger.managed_set_user_config(bob, _config("cyd", 9)).daily_agent_limit == 9
    # A child org's manager is no peer: acme's manager governs eve, eve cannot touch ada.
    ledger.managed_set_user_config(ENG, _config("eve", 3))
    assert ledger.managed_set_user_config(ACME, _config("eve", 8)).daily_agent_limit == 8
    # Who manages is part of the org's stored row: a ledger reloaded still knows the peers.
    acme = ledger._state.orgs.get("acme")
    assert acme.managers == {"ada", "bob"}
    assert Org.from_dict(acme.to_dict()).managers == {"ada", "bob"}


def test_no_org_manages_nothing_not_even_itself(ledger: QuotaLedger) -> None:
    for manager in (Manager("ada", None, "admin"), Manager("ada", "never-made", "admin")):
        with pytest.raises(Forbidden) as excinfo:
            ledger.managed_set_user_config(manager, _config("ada", 1))
        assert _rule(excinfo) == "no_org"


def test_users_outside_the_org_are_refused_and_unplaced_ones_claimed(
    ledger: QuotaLedger,
) -> None:
    ledger.managed_set_user_config(GLOBEX, _config("bea", 7))
    assert ledger.governing_orgs("user", "bea") == ["globex"]
    for manager in (ACME, ENG):
        with pytest.raises(Forbidden) as excinfo:
            ledger.managed_set_user_config(manager, _config("bea", 9))
        assert _rule(excinfo) == "outside_org"
    assert ledger.user_config("bea").daily_agent_limit == 7
    # A parent's manager governs its children's users; a child's manager not its parent's.
    ledger.managed_set_user_config(ENG, _config("cal", 3))
    assert ledger.governing_orgs("user", "cal") == ["acme-eng", "acme"]
    ledger.managed_set_user_config(ACME, _config("cal", 4))
    ledger.managed_set_user_config(ACME, _config("dan", 4))
    with pytest.raises(Forbidden):
        ledger.managed_set_user_config(ENG, _config("dan", 5))


def test_teams_members_and_transfers(ledger: QuotaLedger) -> None:
    ledger.managed_create_team(ACME, "t", "T", 100, 10.0)
    with pytest.raises(Forbidden) as excinfo:
        ledger.managed_create_team(GLOBEX, "g", "G", 10, 1.0, org_id="acme")
    assert _rule(excinfo) == "outside_org"
    ledger.managed_add_member(ACME, "t", "ada", agents=20)  # itself, with a cap: a limit
    ledger.managed_add_member(ACME, "t", "bob", agents=30)
    with pytest.raises(Forbidden) as excinfo:
        ledger.managed_add_member(ACME, "t", "ada", agents=25)
    assert _rule(excinfo) == "self_raise"
    ledger.managed_add_member(ACME, "t", "ada", agents=15)  # lowering its own cap is fine
    with pytest.raises(Forbidden) as excinfo:
        ledger.managed_transfer(ACME, "t", "bob", "ada", agents=5)
    assert _rule(excinfo) == "self_raise"
    assert ledger.managed_transfer(ACME, "t", "ada", "bob", agents=5).to_agents_allocated == 35
    # globex's manager cannot touch acme's team, its members, or pull them into its own.
    ledger.managed_create_team(GLOBEX, "g", "G", 10, 1.0)
    for call in (
        lambda: ledger.managed_add_member(GLOBEX, "t", "gus"),
        lambda: ledger.managed_add_member(GLOBEX, "g", "bob"),
        lambda: ledger.managed_transfer(GLOBEX, "t", "bob", "ada", agents=1),
        lambda: ledger.managed_set_project_allocation(GLOBEX, "t", "p", 1, 0.0),
    ):
        with pytest.raises(Forbidden):
            call()
    assert [m.user_id for m in ledger.team_status("g").members] == []


def test_org_caps_a_manager_is_charged_to_only_go_down(ledger: QuotaLedger) -> None:
    with pytest.raises(Forbidden) as excinfo:
        ledger.managed_patch_org(ACME, "acme", agents=20_000)
    assert _rule(excinfo) == "self_raise"
    assert ledger.managed_patch_org(ACME, "acme", agents=9_000).agents == 9_000
    # The child's caps bind acme's manager only if it sits there: here it does not.
    assert ledger.managed_patch_org(ACME, "acme-eng", agents=6_000).agents == 6_000
    # eng's manager is charged to acme-eng (its org) and cannot raise it; nor touch acme.
    with pytest.raises(Forbidden):
        ledger.managed_patch_org(ENG, "acme-eng", agents=7_000)
    with pytest.raises(Forbidden):
        ledger.managed_patch_org(ENG, "acme", agents=1)
    # A manager placed in a child org is charged to that child too.
    ledger.managed_set_user_config(ENG, _config("ada", 10))  # acme's manager's user, in eng
    with pytest.raises(Forbidden):
        ledger.managed_patch_org(ACME, "acme-eng", agents=6_500)
    # Creating orgs only adds caps; a root org only by its own manager.
    ledger.managed_create_org(ACME, "acme-ops", parent_id="acme", agents=10)
    with pytest.raises(Forbidden) as excinfo:
        ledger.managed_create_org(ACME, "other-root", agents=10)
    assert _rule(excinfo) == "root_org"
    with pytest.raises(Forbidden):
        ledger.managed_create_org(GLOBEX, "sub", parent_id="acme")


# -- two orgs' managers racing ------------------------------------------------------------------

ORGS = {"acme": Manager("ada", "acme", "admin"), "globex": Manager("gus", "globex", "admin")}
MARK = {"acme": 1000, "globex": 2000}  # a config's daily limit says which org's manager set it


def _split_users(ledger: QuotaLedger | QuotaLedgerService, users: list[str]) -> list[str]:
    """Users whose state mixes the two orgs: configured by one, placed in the other, or in a
    team of another org than their own."""
    split = []
    teams = {org: f"team-{org}" for org in ORGS}
    for user in users:
        chain = ledger.governing_orgs("user", user)
        org = chain[0] if chain else None
        config = ledger.user_config(user)
        marked = {v: k for k, v in MARK.items()}.get(config.daily_agent_limit // 1000 * 1000)
        if org is None:
            if marked is not None:
                split.append(user)  # configured by a manager, yet in no org
            continue
        if marked is not None and marked != org:
            split.append(user)
        for other, team in teams.items():
            members = [m.user_id for m in ledger.team_status(team).members]
            if user in members and other != org:
                split.append(user)
    return split


def _setup(ledger: QuotaLedger | QuotaLedgerService) -> None:
    for org in ORGS:
        ledger.create_org(org, agents=10**6, compute_hours=10**3)
        ledger.create_team(f"team-{org}", org, 10**5, 100.0, 0.0, org)


def test_threads_racing_from_two_orgs_never_split_a_user() -> None:
    users = [f"u{i}" for i in range(40)]
    with tempfile.TemporaryDirectory() as tmp:
        service = QuotaLedgerService(Path(tmp) / "quotas.db", clock=FrozenClock(NOW))
        _setup(service)
        start = threading.Barrier(8)

        def manage(worker: int) -> list[str]:
            org = list(ORGS)[worker % 2]
            manager = ORGS[org]
            start.wait()
            outcomes = []
            for i, user in enumerate(users[worker % 4 :] + users[: worker % 4]):
                try:
                    if (i + worker) % 2:
                        service.managed_set_user_config(manager, _config(user, MARK[org] + i % 100))
                    else:
                        service.managed_add_member(manager, f"team-{org}", user)
                    outcomes.append("ok")
                except Forbidden:
                    outcomes.append("refused")
            return outcomes

        with ThreadPoolExecutor(max_workers=8) as pool:
            outcomes = [o for batch in pool.map(manage, range(8)) for o in batch]
        assert "ok" in outcomes and "refused" in outcomes  # they did race for the same users
        assert _split_users(service, users) == []
        placed = {u: service.governing_orgs("user", u) for u in users}
        assert all(len(chain) == 1 for chain in placed.values())
        service.close()
        # And after a restart, from the file: still whole.
        again = QuotaLedgerService(Path(tmp) / "quotas.db", clock=FrozenClock(NOW))
        assert _split_users(again, users) == []
        again.close()


class TenancyMachine(RuleBasedStateMachine):
    """Any interleaving of the two managers' changes, one ledger call each: every user stays
    whole (configured, placed and in teams of one org only), refusals included."""

    USERS = ("u0", "u1", "u2", "u3")

    def __init__(self) -> None:
        super().__init__()
        self.ledger = QuotaLedger(FrozenClock(NOW))
        _setup(self.ledger)
        self.owner: dict[str, str] = {}  # the model: which org took each user

    @rule(org=st.sampled_from(sorted(ORGS)), user=st.sampled_from(USERS), k=st.integers(0, 99))
    def set_config(self, org: str, user: str, k: int) -> None:
        self._apply(
            org,
            user,
            lambda: self.ledger.managed_set_user_config(ORGS[org], _config(user, MARK[org] + k)),
        )

    @rule(org=st.sampled_from(sorted(ORGS)), user=st.sampled_from(USERS))
    def add_member(self, org: str, user: str) -> None:
        self._apply(
            org, user, lambda: self.ledger.managed_add_member(ORGS[org], f"team-{org}", user)
        )

    @rule(org=st.sampled_from(sorted(ORGS)), user=st.sampled_from(USERS))
    def foreign_team(self, org: str, user: str) -> None:
        other = next(o for o in ORGS if o != org)
        with pytest.raises(Forbidden):
            self.ledger.managed_add_member(ORGS[org], f"team-{other}", user)

    def _apply(self, org: str, user: str, call: Any) -> None:
        if self.owner.get(user, org) != org:  # another org took the user: refused, no change
            with pytest.raises(Forbidden) as excinfo:
                call()
            assert excinfo.value.details["rule"] == "outside_org"
            return
        call()
        self.owner.setdefault(user, org)

    @invariant()
    def every_user_is_whole(self) -> None:
        assert _split_users(self.ledger, list(self.USERS)) == []
        for user in self.USERS:
            chain = self.ledger.governing_orgs("user", user)
            assert chain == ([self.owner[user]] if user in self.owner else [])


TestTenancyMachine = TenancyMachine.TestCase
TestTenancyMachine.settings = settings(max_examples=60, stateful_step_count=25, deadline=None)


def test_refusals_change_nothing(ledger: QuotaLedger) -> None:
    ledger.managed_create_team(ACME, "t", "T", 10, 1.0)
    ledger.managed_set_user_config(ACME, _config("bob", 3))
    for call in (
        lambda: ledger.managed_set_user_config(GLOBEX, _config("bob", 1)),
        lambda: ledger.managed_set_user_config(ACME, _config("ada", 10**6)),
        lambda: ledger.managed_add_member(GLOBEX, "t", "gus"),
        lambda: ledger.managed_add_member(ACME, "t", "cy", agents=11),  # above the pool
        lambda: ledger.managed_patch_org(ACME, "acme", agents=10**9),
        lambda: ledger.managed_transfer(ACME, "t", "bob", "ada", agents=1),
    ):
        before = ledger.snapshot()
        with pytest.raises((Forbidden, InvalidInput)):
            call()
        assert ledger.snapshot() == before
