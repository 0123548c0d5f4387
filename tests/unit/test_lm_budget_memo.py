"""A task's LM budget, the memo cache and the provider settings (pure, no Ray, no server)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlm.errors import InvalidInput, QuotaExceeded
from rlm.lm.budget import Budget, TaskBudget
from rlm.lm.calls import LMReply, LMRequest, LMUsage, cost_usd, estimate_tokens, memo_key
from rlm.lm.memo import MemoStore
from rlm.lm.settings import LMSettings, load_providers


def test_a_budget_of_n_calls_admits_exactly_n() -> None:
    budget = TaskBudget(Budget(lm_calls=3))
    holds = [budget.reserve(10, 0.0) for _ in range(3)]
    with pytest.raises(QuotaExceeded) as info:
        budget.reserve(10, 0.0)
    assert info.value.details["budget"] == "lmCalls"
    assert info.value.details["limit"] == 3
    budget.release(holds[0])  # never answered: frees its place
    budget.reserve(10, 0.0)


def test_token_and_cost_budgets_count_holds_in_flight() -> None:
    budget = TaskBudget(Budget(tokens=100, cost_usd=1.0))
    hold = budget.reserve(60, 0.5)
    with pytest.raises(QuotaExceeded) as info:
        budget.reserve(41, 0.1)
    assert info.value.details == {
        "resource": "budget",
        "budget": "tokens",
        "limit": 100,
        "used": 0,
        "held": 60,
        "needs": 41,
    }
    budget.settle(hold, 30, 0.2, counted=True)
    budget.settle(hold, 30, 0.2, counted=True)  # a second settle changes nothing
    assert (budget.calls, budget.tokens, budget.cost_usd) == (1, 30, 0.2)
    with pytest.raises(QuotaExceeded) as info:
        budget.reserve(10, 0.81)
    assert info.value.details["budget"] == "costUsd"


@settings(max_examples=60, deadline=None)
@given(
    limit=st.integers(0, 500),
    steps=st.lists(st.tuples(st.integers(0, 120), st.integers(0, 150), st.booleans()), max_size=30),
)
def test_settled_tokens_never_exceed_the_budget_when_usage_stays_within_the_hold(
    limit: int, steps: list[tuple[int, int, bool]]
) -> None:
    budget = TaskBudget(Budget(tokens=limit))
    for worst, actual, answered in steps:
        try:
            hold = budget.reserve(worst, 0.0)
        except QuotaExceeded:
            assert budget.tokens + worst > limit
            continue
        if answered:
            budget.settle(hold, min(actual, worst), 0.0, counted=True)
        else:
            budget.release(hold)
        assert budget.tokens <= limit


def test_usage_counts_cached_calls_apart() -> None:
    usage = LMUsage()
    usage.add(LMReply("a", "p", "m", input_tokens=10, output_tokens=5, cost_usd=0.01))
    usage.add(LMReply("a", "p", "m", cached=True))
    assert usage.to_wire() == {
        "lmCalls": 2,
        "cachedCalls": 1,
        "inputTokens": 10,
        "outputTokens": 5,
        "costUsd": 0.01,
    }


def test_estimates_err_high_and_costs_are_per_million() -> None:
    messages = [{"role": "user", "content": "x" * 400}]
    assert estimate_tokens(messages) >= 400 // 4
    assert cost_usd(1_000_000, 2_000_000, 0.5, 1.5) == pytest.approx(3.5)


def test_memo_keys_and_store(database_url: str | None, tmp_path: Path) -> None:
    a = LMRequest.chat("hello", max_tokens=5)
    b = LMRequest.chat("hello", max_tokens=5, system="s")
    assert memo_key("p", "m", a, 5) == memo_key("p", "m", LMRequest.chat("hello"), 5)
    assert memo_key("p", "m", a, 5) != memo_key("p", "m", b, 5)
    assert memo_key("p", "m", a, 5) != memo_key("p", "m2", a, 5)
    assert memo_key("p", "m", a, 5) != memo_key("p", "m", a, 6)
    store = MemoStore(tmp_path / "state.db", database_url=database_url)
    key = memo_key("p", "m", a, 5)
    assert store.get(key) is None
    store.put(key, LMReply("hi", "p", "m", input_tokens=3, output_tokens=1, cost_usd=0.1))
    store.close()
    again = MemoStore(tmp_path / "state.db", database_url=database_url)  # it survives a restart
    hit = again.get(key)
    assert hit is not None and hit.cached and hit.text == "hi"
    assert (hit.input_tokens, hit.output_tokens, hit.cost_usd) == (0, 0, 0.0)
    assert again.count() == 1


def test_default_provider_from_settings_and_openai_key_fallback() -> None:
    lm = LMSettings(base_url="http://127.0.0.1:9/v1/", model="m", sub_model="s")
    providers = lm.providers({"OPENAI_API_KEY": "sk-test"})
    default = providers["default"]
    assert default.base_url == "http://127.0.0.1:9/v1"
    assert default.api_key is not None and default.api_key.get_secret_value() == "sk-test"
    assert "sk-test" not in repr(default) and "sk-test" not in str(default.public())
    assert default.allows_model("s") and not default.allows_model("other")
    assert LMSettings().providers({}) == {}
    limited = LMSettings(
        base_url="http://x/v1",
        max_concurrency=7,
        max_inflight_per_tenant=3,
        requests_per_minute=5,
        tokens_per_minute=900,
        input_price_per_mtok=1.5,
        output_price_per_mtok=2.5,
        timeout_s=9,
        context_window=100,
    ).providers({})["default"]
    assert (limited.max_concurrency, limited.max_inflight_per_tenant) == (7, 3)
    assert (limited.requests_per_minute, limited.tokens_per_minute) == (5, 900)
    assert (limited.input_price_per_mtok, limited.output_price_per_mtok) == (1.5, 2.5)
    assert (limited.timeout_s, limited.context_window) == (9, 100)


def test_providers_file(tmp_path: Path) -> None:
    path = tmp_path / "lm.yaml"
    path.write_text(
        "providers:\n"
        "  - name: local\n    baseUrl: http://127.0.0.1:8080/v1\n    apiKeyEnv: LOCAL_KEY\n"
        "    model: small\n    maxConcurrency: 8\n    requestsPerMinute: 600\n"
        "    inputPricePerMTok: 0.15\n    outputPricePerMTok: 0.6\n    contextWindow: 2048\n"
    )
    (local,) = load_providers(path, {"LOCAL_KEY": "secret-1"})
    assert local.name == "local" and local.max_concurrency == 8
    assert local.api_key is not None and local.api_key.get_secret_value() == "secret-1"
    assert local.requests_per_minute == 600 and local.context_window == 2048
    both = LMSettings(base_url="http://x/v1", config=path).providers({"LOCAL_KEY": "k"})
    assert sorted(both) == ["default", "local"]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("providers: 3", "providers:"),
        ("providers:\n  - name: a\n    model: m\n", "malformed"),
        ("providers:\n  - name: a\n    baseUrl: ftp://x\n    model: m\n", "malformed"),
        (
            "providers:\n  - name: a\n    baseUrl: http://x\n    model: m\n    apiKey: k\n",
            "apiKeyEnv",
        ),
        (": : :", "not YAML"),
    ],
)
def test_bad_providers_files_are_clear(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "lm.yaml"
    path.write_text(text)
    with pytest.raises(InvalidInput, match=match) as info:
        load_providers(path, {})
    assert info.value.details["field"] == "RLM_LM__CONFIG"


def test_a_missing_providers_file_is_clear(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="cannot read"):
        load_providers(tmp_path / "nope.yaml", {})


@settings(max_examples=80, deadline=None)
@given(
    concurrency=st.integers(1, 300),
    per_tenant=st.one_of(st.none(), st.integers(1, 50)),
    rpm=st.one_of(st.none(), st.integers(1, 5000)),
    tpm=st.one_of(st.none(), st.integers(1, 10**6)),
    shards=st.one_of(st.none(), st.integers(1, 16)),
)
def test_gateway_shards_split_every_limit_exactly(
    concurrency: int, per_tenant: int | None, rpm: int | None, tpm: int | None, shards: int | None
) -> None:
    from rlm.lm.settings import ProviderSettings

    provider = ProviderSettings(
        base_url="http://x/v1",
        model="m",
        max_concurrency=concurrency,
        max_inflight_per_tenant=per_tenant,
        requests_per_minute=rpm,
        tokens_per_minute=tpm,
        gateway_shards=shards,
    )
    parts = provider.shards()
    assert sum(p.max_concurrency for p in parts) == concurrency
    for field, total in (
        ("max_inflight_per_tenant", per_tenant),
        ("requests_per_minute", rpm),
        ("tokens_per_minute", tpm),
    ):
        values = [getattr(p, field) for p in parts]
        if total is None:
            assert values == [None] * len(parts)
        else:
            assert sum(values) == total and min(values) >= 1
    wanted = shards or min(8, max(1, concurrency // 32))
    limits = [c for c in (concurrency, per_tenant, rpm, tpm) if c is not None]
    assert len(parts) == min([wanted, *limits])  # as many as asked, never a share of 0


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["reserve", "settle", "release"]), st.integers(0, 50)),
        max_size=40,
    )
)
def test_what_is_held_always_equals_the_open_holds(steps: list[tuple[str, int]]) -> None:
    budget = TaskBudget(Budget(tokens=500, cost_usd=5.0))
    open_holds = []
    for action, n in steps:
        if action == "reserve":
            with contextlib.suppress(QuotaExceeded):
                open_holds.append(budget.reserve(n, n / 100))
        elif open_holds:
            hold = open_holds.pop(n % len(open_holds))
            if action == "settle":
                budget.settle(hold, n, 0.0, counted=True)
            else:
                budget.release(hold)
        calls, tokens, cost = budget._held()
        assert calls == len(open_holds)
        assert tokens == sum(h.tokens for h in open_holds)
        assert cost == pytest.approx(sum(h.cost_usd for h in open_holds))
