"""``examples/tenants.yaml``: the commented example file loads, and the README shows it whole."""

from __future__ import annotations

from pathlib import Path

from rlm.quotas.clock import SystemClock
from rlm.quotas.ledger import QuotaLedger
from rlm.tenants import apply_tenants, load_tenant_file

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "tenants.yaml"


def test_the_example_file_loads_into_a_ledger_twice_the_same() -> None:
    tenants = load_tenant_file(EXAMPLE)
    ledger = QuotaLedger(SystemClock())

    def call(method: str, *args: object, **kwargs: object) -> object:
        return getattr(ledger, method)(*args, **kwargs)

    first = apply_tenants(tenants, call)
    assert first == {
        "orgsCreated": 2,
        "orgsUpdated": 0,
        "teamsCreated": 1,
        "members": 2,
        "users": 2,
    }
    again = apply_tenants(load_tenant_file(EXAMPLE), call)
    assert again == {
        "orgsCreated": 0,
        "orgsUpdated": 2,
        "teamsCreated": 0,
        "members": 2,
        "users": 2,
    }
    alice = ledger.user_config("alice")
    assert (alice.daily_agent_limit, alice.daily_token_limit) == (5000, 2_000_000)
    assert ledger.user_config("bob").daily_token_limit is None
    team = ledger.team_status("research")
    assert (team.config.team_name, team.org_id) == ("Research", "eng")
    members = {m.user_id: m.agents_allocated for m in team.members}
    assert members == {"alice": 12000, "bob": None}


def test_the_readme_shows_the_example_file_verbatim() -> None:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("<!-- tenants:start -->\n```yaml\n") + len(
        "<!-- tenants:start -->\n```yaml\n"
    )
    end = readme.index("```\n<!-- tenants:end -->")
    assert readme[start:end] == EXAMPLE.read_text()
