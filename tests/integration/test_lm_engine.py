"""LM operations on the engine, against an OpenAI-compatible server of our own on loopback.

``FakeLMServer`` stands in for a paid LM API (this machine reaches none): it speaks the real
protocol to the real ``openai`` client in the gateway actors, answers deterministically, and
counts what it receives, so these tests measure at the server what the service sent.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

import rlm
from rlm.config import EngineSettings, Settings
from rlm.lm.settings import LMSettings
from rlm.testing import ChatRequest, FakeLMServer
from rlm.testing.oracle import classify_oracle
from tests.integration.conftest import with_test_ops
from tests.shared_data import trec_rows
from tests.support import wait_until

pytestmark = pytest.mark.integration

LABELS = [
    "abbreviation",
    "description and abstract concept",
    "entity",
    "human being",
    "location",
    "numeric value",
]


def _reply(request: ChatRequest) -> str:
    prompt = request.last_user_message
    if "\nLines:\n" in prompt:
        return ORACLE(prompt)
    return "R:" + prompt[::-1]


_GOLD: dict[str, str] = {}
ORACLE = classify_oracle(_GOLD, default="entity")


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLMServer]:
    _GOLD.update({row["input"]: row["label"] for row in trec_rows()})
    with FakeLMServer(responder=_reply, models=("fake-model", "fake-sub-model", "ghost")) as srv:
        yield srv


@pytest.fixture(scope="module")
def lm_hv(
    ray_session: None, server: FakeLMServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[rlm.Hypervisor]:
    state = tmp_path_factory.mktemp("lm-engine")
    config = state / "providers.yaml"
    config.write_text(
        "providers:\n"
        f"  - {{name: narrow, baseUrl: '{server.url}', apiKeyEnv: RLM_TEST_LM_KEY,"
        " model: fake-model, maxConcurrency: 4, maxInflightPerTenant: 2}\n"
        f"  - {{name: sharded, baseUrl: '{server.url}', apiKeyEnv: RLM_TEST_LM_KEY,"
        " model: fake-model, maxConcurrency: 4, maxInflightPerTenant: 2, gatewayShards: 2}\n"
        f"  - {{name: badkey, baseUrl: '{server.url}', model: fake-model}}\n"
        "  - {name: nowhere, baseUrl: 'http://127.0.0.1:9/v1', model: fake-model,"
        " maxRetries: 0, timeoutS: 5}\n"
        f"  - {{name: windowed, baseUrl: '{server.url}', apiKeyEnv: RLM_TEST_LM_KEY,"
        " model: fake-model, contextWindow: 64}\n"
        f"  - {{name: ghosts, baseUrl: '{server.url}', apiKeyEnv: RLM_TEST_LM_KEY,"
        " model: nosuchmodel}\n"
    )
    os.environ["RLM_TEST_LM_KEY"] = "test-key"
    settings = Settings(
        state_dir=state,
        engine=EngineSettings(agents=2, cancel_grace_s=5.0),
        lm=LMSettings(
            base_url=server.url,
            api_key="test-key",  # type: ignore[arg-type]
            model="fake-model",
            sub_model="fake-sub-model",
            max_concurrency=64,
            input_price_per_mtok=1.0,
            output_price_per_mtok=2.0,
            config=config,
        ),
    )
    hv = rlm.connect(settings=settings)
    yield hv
    hv.shutdown_engine()


@pytest.fixture(autouse=True)
def _fresh(server: FakeLMServer) -> None:
    server.latency_s = 0.0
    server.omit_usage = False
    server.reset_stats()


def _map(items: list[Any], **extra: Any) -> dict[str, Any]:
    options = extra.pop("options", {})
    params = {"prompt": "Q {chunk}", **extra}
    return {
        "type": "parallel",
        "description": "map",
        "input": {"items": items, "operation": "llm_map", "params": params},
        "options": options,
    }


def test_llm_map_sends_one_call_per_chunk_and_reports_usage(
    lm_hv: rlm.Hypervisor, server: FakeLMServer
) -> None:
    items = [f"item {i}" for i in range(12)]
    result = lm_hv.execute(_map(items, options={"leafSize": 3, "memo": False}))
    assert result.status == "completed", result.error
    chunks = ["\n".join(items[i : i + 3]) for i in range(0, 12, 3)]
    assert result.output == ["R:" + f"Q {c}"[::-1] for c in chunks]
    assert result.agent_calls == 5  # four LM leaves and the combine
    stats = server.stats()
    assert stats.ok == 4
    usage = result.usage
    assert usage is not None and usage.lm_calls == 4 and usage.cached_calls == 0
    sent = server.requests
    from rlm.testing import count_prompt_tokens, count_tokens

    want_in = sum(count_prompt_tokens(r.messages) for r in sent)
    want_out = sum(count_tokens("R:" + r.last_user_message[::-1]) for r in sent)
    assert (usage.input_tokens, usage.output_tokens) == (want_in, want_out)
    assert usage.cost_usd == pytest.approx((want_in * 1.0 + want_out * 2.0) / 1e6)
    stored = lm_hv.status(result.task_id).result
    assert stored is not None and stored.usage == usage


@pytest.mark.parametrize("shape", ["recursive", "parallel", "sequential"])
def test_llm_classify_over_oolong_matches_the_published_counts(
    lm_hv: rlm.Hypervisor, shape: str
) -> None:
    rows = trec_rows()
    result = lm_hv.execute(
        {
            "type": shape,
            "description": "label TREC questions",
            "input": {
                "items": [r["input"] for r in rows],
                "operation": "llm_classify",
                "params": {"labels": LABELS},
            },
            "options": {"leafSize": 300, "fanout": 4},
        }
    )
    assert result.status == "completed", result.error
    published = Counter(r["label"] for r in rows)
    assert result.output == {label: published[label] for label in LABELS}
    assert published["human being"] == 1034  # the data's README
    assert result.usage is not None and result.usage.lm_calls + 0 >= 14


@pytest.mark.parametrize(("shape", "calls"), [("recursive", 4 + 2 + 1), ("sequential", 4)])
def test_llm_summarize_asks_the_model_in_combines_and_folds(
    lm_hv: rlm.Hypervisor, server: FakeLMServer, shape: str, calls: int
) -> None:
    # On the core's agent each call runs as steps on the loop; combines and folds of a
    # summary are model calls too, each answered and counted.
    result = lm_hv.execute(
        {
            "type": shape,
            "description": "summarise",
            "input": {"items": [f"fact {i}" for i in range(8)], "operation": "llm_summarize"},
            "options": {"leafSize": 2, "fanout": 2, "memo": False},
        }
    )
    assert result.status == "completed", result.error
    sent = server.requests
    purposes = Counter(
        "combine"
        if "consecutive parts" in r.last_user_message
        else "fold"
        if "summary of the text so far" in r.last_user_message
        else "leaf"
        for r in sent
    )
    assert len(sent) == calls and result.usage is not None and result.usage.lm_calls == calls
    if shape == "recursive":
        assert purposes == Counter({"leaf": 4, "combine": 3})
    else:
        assert purposes == Counter({"leaf": 1, "fold": 3})
    last = (
        sent[-1].last_user_message
        if shape == "sequential"
        else next(
            r.last_user_message
            for r in reversed(sent)
            if "consecutive parts" in r.last_user_message
        )
    )
    assert result.output == ("R:" + last[::-1]).strip()


def test_a_budget_of_n_calls_sends_exactly_n(lm_hv: rlm.Hypervisor, server: FakeLMServer) -> None:
    result = lm_hv.execute(
        _map([f"x{i}" for i in range(10)], options={"leafSize": 1, "budget": {"lmCalls": 3}})
    )
    assert result.status == "failed"
    assert result.error is not None and result.error.code == "QUOTA_EXCEEDED"
    assert result.error.details["budget"] == "lmCalls"
    assert server.stats().requests == 3
    assert result.usage is not None and result.usage.lm_calls == 3


def test_identical_calls_are_memoised_free_and_counted(
    lm_hv: rlm.Hypervisor, server: FakeLMServer
) -> None:
    request = _map(["memo a", "memo b", "memo c"], options={"leafSize": 1})
    first = lm_hv.execute(request)
    assert first.usage is not None and first.usage.lm_calls == 3
    sent = server.stats().requests
    second = lm_hv.execute(request)
    assert second.output == first.output
    assert second.usage is not None and second.usage.cached_calls == 3
    assert (second.usage.input_tokens, second.usage.cost_usd) == (0, 0.0)
    assert server.stats().requests == sent  # nothing sent
    fresh = dict(request, options={"leafSize": 1, "memo": False})
    third = lm_hv.execute(fresh)
    assert third.usage is not None and third.usage.cached_calls == 0
    assert server.stats().requests == sent + 3


def test_cancel_stops_new_calls_within_one_latency(
    lm_hv: rlm.Hypervisor, server: FakeLMServer
) -> None:
    server.latency_s = 0.3
    task_id = lm_hv.submit(
        _map(
            [f"c{i}" for i in range(60)], provider="narrow", options={"leafSize": 1, "memo": False}
        )
    )
    wait_until(lambda: server.stats().requests >= 2, 30, "the first LM requests arrive")
    answer = lm_hv.cancel(task_id)
    assert answer.status == "cancelled"
    after = server.stats().requests
    # Measured quiet: over two latencies after the cancel answered, nothing new is sent.
    time.sleep(0.6)
    assert server.stats().requests == after
    result = lm_hv.result(task_id, timeout=10)
    assert result.status == "cancelled"
    assert after < 60


@pytest.mark.parametrize("provider", ["narrow", "sharded"])
def test_many_tasks_of_one_tenant_respect_provider_and_tenant_caps(
    lm_hv: rlm.Hypervisor, server: FakeLMServer, provider: str
) -> None:
    # "sharded" splits the same limits over two gateway processes (one in flight per tenant
    # each): together they must hold exactly what one gateway holds.
    server.latency_s = 0.05
    requests = [
        _map(
            [f"t{t}-{i}" for i in range(4)],
            provider=provider,
            options={"leafSize": 1, "memo": False},
        )
        for t in range(64)
    ]
    ids = [lm_hv.submit(r) for r in requests]
    results = [lm_hv.result(i, timeout=120) for i in ids]
    assert all(r.status == "completed" for r in results)
    stats = server.stats()
    assert stats.requests == 256
    # "narrow": 4 at once, 2 per tenant; every task here belongs to one tenant.
    assert 1 <= stats.max_in_flight <= 2
    shards = [g for g in lm_hv.lm_gateways() if g["provider"] == provider]
    assert len(shards) == (2 if provider == "sharded" else 1)
    assert sum(g["answered"] for g in shards) >= 256
    assert all(max(g["maxInflightByTenant"].values()) <= 2 // len(shards) for g in shards)


@pytest.mark.parametrize(
    ("provider", "code", "fragment"),
    [
        ("nowhere", "INTERNAL_ERROR", "unreachable"),
        ("badkey", "INTERNAL_ERROR", "refused the service's API key"),
        ("ghosts", "INTERNAL_ERROR", "does not know this model"),
    ],
)
def test_provider_failures_are_clear_and_charge_nothing(
    lm_hv: rlm.Hypervisor, provider: str, code: str, fragment: str
) -> None:
    result = lm_hv.execute(_map(["a"], provider=provider, options={"memo": False}))
    assert result.status == "failed"
    assert result.error is not None and result.error.code == code
    assert fragment in result.error.message and provider in result.error.message
    assert result.usage is not None and result.usage.lm_calls == 0
    assert result.usage.input_tokens == 0 and result.usage.cost_usd == 0


def test_bad_models_and_providers_are_refused_before_anything_runs(
    lm_hv: rlm.Hypervisor,
) -> None:
    with pytest.raises(rlm.errors.InvalidInput, match="not offered") as info:
        lm_hv.execute(_map(["a"], model="gpt-nope"))
    assert info.value.details["field"] == "input.params.model"
    with pytest.raises(rlm.errors.InvalidInput, match="not configured"):
        lm_hv.execute(_map(["a"], provider="nobody"))


def test_an_oversized_prompt_is_invalid_input(lm_hv: rlm.Hypervisor, server: FakeLMServer) -> None:
    result = lm_hv.execute(_map(["word " * 400], provider="windowed", maxTokens=8))
    assert result.status == "failed"
    assert result.error is not None and result.error.code == "INVALID_INPUT"
    assert "context window" in result.error.message
    assert server.stats().requests == 0


def test_a_reply_without_usage_fails_the_task(lm_hv: rlm.Hypervisor, server: FakeLMServer) -> None:
    server.omit_usage = True
    result = lm_hv.execute(_map(["u"], options={"memo": False}))
    assert result.status == "failed"
    assert result.error is not None and "without usage" in result.error.message


def test_429_with_retry_after_is_retried(lm_hv: rlm.Hypervisor, server: FakeLMServer) -> None:
    server.fail_next(1, status=429, retry_after_s=0.2)
    result = lm_hv.execute(_map(["retry me"], options={"memo": False}))
    assert result.status == "completed", result.error
    stats = server.stats()
    assert stats.refused == {429: 1} and stats.ok == 1
    gaps = [b - a for a, b in zip(stats.arrivals, stats.arrivals[1:], strict=False)]
    assert gaps and gaps[0] >= 0.19  # the retry waited as the provider asked


def test_timeout_stops_a_stalled_call(lm_hv: rlm.Hypervisor, server: FakeLMServer) -> None:
    server.stall_next(1, 30.0)
    t0 = time.monotonic()
    result = lm_hv.execute(_map(["stall"], options={"memo": False, "timeoutMs": 1000}))
    assert result.status == "failed"
    assert result.error is not None and result.error.code == "TIMEOUT"
    assert time.monotonic() - t0 < 20


def test_a_users_lm_operation_runs_on_the_agent_actors(
    lm_hv: rlm.Hypervisor, server: FakeLMServer
) -> None:
    # Registered operations never run in the core's process; their calls reach the broker
    # over Ray from the agent actors, and count as agent calls the same way.
    op = with_test_ops(lm_hv).registry.get("ask_each")
    assert not type(op).__module__.startswith("rlm.operations.")
    result = lm_hv.execute(
        {
            "type": "parallel",
            "description": "user LM op",
            "input": {"items": ["a", "b", "c", "d"], "operation": "ask_each"},
            "options": {"leafSize": 2, "memo": False},
        }
    )
    assert result.status == "completed", result.error
    assert result.output == ["R:" + f"ask {x}"[::-1] for x in "abcd"]
    assert result.agent_calls == 5  # two leaves of two LM requests each, and the combine
    assert result.usage is not None and result.usage.lm_calls == 4
    assert server.stats().ok == 4


def test_gateways_start_with_the_engine(lm_hv: rlm.Hypervisor) -> None:
    # Every configured provider's gateway (each shard) is started when the engine comes up,
    # so a first LM call does not wait for a process to start.
    started = Counter(g["provider"] for g in lm_hv.lm_gateways())
    assert started == Counter(
        {"default": 2, "narrow": 1, "sharded": 2, "badkey": 1, "nowhere": 1, "windowed": 1}
        | {"ghosts": 1}
    )
