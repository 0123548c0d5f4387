"""The OOLONG evaluation through a real engine, with the oracle LM behind a loopback server.

The oracle labels lines from the data, so every mode that can see the lines must score 100 %:
this proves the whole harness — windows, prompts, the engine's LM operations, the gateway and
the real ``openai`` client, parsing, scoping, counting, scoring and the report — and leaves the
model as the only thing a real run measures.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import rlm
from rlm.config import EngineSettings, Settings
from rlm.eval import KINDS, plan_oolong, run_plan
from rlm.eval.modes import ModeConfig
from rlm.eval.run import EvalPlan
from rlm.rlmmode.settings import RLMSettings
from rlm.testing import FakeLMServer
from rlm.testing.oolong_oracle import ANSWER_MARK, ROOT_CHUNK_LINES, oolong_responder
from tests.unit.eval_data import gold_labels, instances

pytestmark = pytest.mark.integration

IN_PRICE, OUT_PRICE = 1.0, 2.0  # USD per million tokens


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLMServer]:
    with FakeLMServer(responder=oolong_responder(gold_labels())) as srv:
        yield srv


@pytest.fixture(scope="module")
def eval_hv(
    ray_session: None, server: FakeLMServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[rlm.Hypervisor]:
    from rlm.lm.settings import LMSettings

    settings = Settings(
        state_dir=tmp_path_factory.mktemp("eval-engine"),
        engine=EngineSettings(agents=2, cancel_grace_s=5.0),
        lm=LMSettings(
            base_url=server.url,
            api_key="test-key",  # type: ignore[arg-type]
            model="fake-model",
            max_concurrency=8,
            input_price_per_mtok=IN_PRICE,
            output_price_per_mtok=OUT_PRICE,
        ),
        rlm=RLMSettings(hosts=1, prestart=1),
    )
    hv = rlm.connect(settings=settings)
    yield hv
    hv.shutdown_engine()


@pytest.fixture(scope="module")
def plan() -> EvalPlan:
    # One window, one question of each kind.
    return plan_oolong(instances(), questions=8, window_tokens=3000, seed=21)


def test_direct_and_map_reduce_score_100_percent_with_the_oracle(
    eval_hv: rlm.Hypervisor, server: FakeLMServer, plan: EvalPlan
) -> None:
    server.reset_stats()
    report = run_plan(eval_hv, plan, modes=["direct", "map-reduce"])
    failed = [(r.mode, r.question.id, r.run.error) for r in report.results if r.score != 1.0]
    assert not failed
    direct, mapped = report.summary("direct"), report.summary("map-reduce")
    assert (direct.accuracy, direct.errors, mapped.accuracy, mapped.errors) == (1.0, 0, 1.0, 0)
    # Direct: one LM call per question, the whole window in its prompt.
    assert direct.lm_calls == direct.questions == 8
    window = plan.windows[0]
    direct_prompts = [
        r.last_user_message for r in server.requests if "Here is the data" in r.last_user_message
    ]
    assert len(direct_prompts) == 8
    assert all(window.text in p for p in direct_prompts)
    # Map-reduce: several classify calls for whole-window questions, fewer for scoped ones.
    by_kind = {r.question.kind: r.run for r in report.results if r.mode == "map-reduce"}
    assert by_kind["count"].lm_calls > by_kind["user_count"].lm_calls >= 1
    # Usage is the provider's, priced; memo is off, so every call reached the server.
    for s in (direct, mapped):
        assert s.input_tokens > 0 and s.output_tokens > 0 and s.cached_calls == 0
        want = (s.input_tokens * IN_PRICE + s.output_tokens * OUT_PRICE) / 1e6
        assert s.cost_usd == pytest.approx(want)
        assert s.p50_ms <= s.p95_ms
    assert server.stats().requests == direct.lm_calls + mapped.lm_calls
    assert report.to_json()["modes"]["map-reduce"]["accuracy"] == 1.0


def test_the_rlm_mode_scores_100_percent_on_every_kind_with_the_oracle(
    eval_hv: rlm.Hypervisor, server: FakeLMServer, plan: EvalPlan
) -> None:
    server.reset_stats()
    config = ModeConfig(timeout_ms=120_000, max_iterations=4)
    report = run_plan(eval_hv, plan, modes=["rlm"], config=config)
    failed = [(r.question.id, r.run.status, r.run.error, r.run.reply) for r in report.results]
    assert all(r.score == 1.0 for r in report.results), failed
    summary = report.summary("rlm")
    assert (summary.accuracy, summary.errors, summary.questions) == (1.0, 0, 8)
    assert summary.by_kind == dict.fromkeys(KINDS, 1.0)
    window = plan.windows[0]
    for result in report.results:
        run = result.run
        # The root's turns and its sub-calls are the task's agent calls, all answered by the
        # server: one root turn (its block answers), then the classify batch.
        assert run.agent_calls == run.lm_calls >= 2
        assert run.input_tokens > 0 and run.output_tokens > 0
        if result.question.spec.scope.kind == "all":
            assert run.lm_calls == 1 + -(-len(window.lines) // ROOT_CHUNK_LINES)
    assert server.stats().requests == summary.lm_calls
    # What the root was shown: the query and the context's metadata, never the context.
    roots = [r for r in server.requests if r.messages[0]["role"] == "system"]
    assert len(roots) == 8
    for request in roots:
        first = request.messages[1]["content"]
        assert first.startswith("Answer the following: ") and "Turn 1/4:" in first
        assert window.text not in first and len(first) < len(window.text) // 4
    # The trajectory of a task holds the turn, the cell that printed the answer, the batch.
    task_id = report.results[0].run.task_id
    assert task_id is not None
    events = eval_hv.trajectory(task_id).events
    kinds = [e.event for e in events]
    assert kinds[0] == "rlm.turn" and "rlm.subcalls" in kinds and kinds[-1] == "task.completed"
    cell = next(e for e in events if e.event == "rlm.cell")
    assert ANSWER_MARK in cell.data["stdout"]
