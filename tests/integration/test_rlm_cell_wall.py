"""A cell's wall time on the engine bounds what the cell waits for: sub-calls and child RLMs.

An engine of its own, with a 2 s cell wall time (``RLM_SANDBOX__CELL_TIMEOUT_S``), real Ray
and real sandboxes; ``FakeLMServer`` on loopback stands in for a paid LM API and holds the
calls these tests stall for 60 s. Each test proves the cell ended near its 2 s, not when the
server would have answered, that the stalled calls were stopped (never charged), and that the
root went on to its next turn.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

import rlm
from rlm.config import EngineSettings, Settings
from rlm.lm.settings import LMSettings
from rlm.rlmmode.settings import RLMSettings
from rlm.sandbox.settings import SandboxSettings
from rlm.testing import FakeLMServer
from tests import rlm_script
from tests.rlm_script import script

pytestmark = pytest.mark.integration

CELL_S = 2.0
STALL_S = 60.0
# The cell's wall time, SIGINT's grace, and room for a loaded 2-core machine; far below STALL_S.
WITHIN_S = 20.0


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLMServer]:
    with FakeLMServer(responder=rlm_script.responder, models=("fake-model",)) as srv:
        yield srv


@pytest.fixture(scope="module")
def hv(
    ray_session: None, server: FakeLMServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[rlm.Hypervisor]:
    settings = Settings(
        state_dir=tmp_path_factory.mktemp("rlm-cell-wall"),
        engine=EngineSettings(agents=1, cancel_grace_s=5.0),
        lm=LMSettings(
            base_url=server.url,
            api_key="test-key",  # type: ignore[arg-type]
            model="fake-model",
            max_concurrency=16,
        ),
        sandbox=SandboxSettings(cell_timeout_s=CELL_S, cell_cpu_s=2),
        rlm=RLMSettings(hosts=1, prestart=1),
    )
    engine = rlm.connect(settings=settings)
    yield engine
    engine.shutdown_engine()


def _task(query: str, **options: Any) -> dict[str, Any]:
    return {
        "type": "recursive",
        "description": "cell wall",
        "input": {"operation": "rlm", "query": query, "context": ["a", "b"]},
        "options": {"memo": False, **options},
    }


def _cells(hv: rlm.Hypervisor, task_id: str) -> list[dict[str, Any]]:
    return [e.data for e in hv.trajectory(task_id).events if e.event == "rlm.cell"]


def test_a_sub_call_batch_in_flight_is_stopped_at_the_cells_wall_time(
    hv: rlm.Hypervisor, server: FakeLMServer
) -> None:
    query = script(
        ["```repl\nrs = llm_query_batched([f'slow {i}' for i in range(4)])\n```", "FINAL(went on)"]
    )
    server.stall_next(1, 0.0)  # the root's first turn answers at once
    server.stall_next(4, STALL_S)  # the batch hangs at the server
    started = time.monotonic()
    result = hv.execute(_task(query))
    took = time.monotonic() - started
    assert result.status == "completed", result.error
    assert result.output == "went on"
    assert took < WITHIN_S, f"the cell waited {took:.1f} s for its sub-calls"
    # Two root turns answered; the four stopped sub-calls are neither counted nor charged.
    assert result.agent_calls == 2
    assert result.usage is not None and result.usage.lm_calls == 2
    (cell,) = _cells(hv, result.task_id)
    assert cell["killedReason"] in ("wall_timeout", "wall_timeout_killed")
    assert cell["durationMs"] < WITHIN_S * 1000
    feedback = [r for r in server.requests if "Recursive Language Model" in str(r.messages[0])]
    assert f"ran past its {CELL_S} s timeout" in feedback[-1].last_user_message


def test_a_child_rlm_ends_with_its_parents_cell(hv: rlm.Hypervisor, server: FakeLMServer) -> None:
    rlm_script.CHILD["WALLCHILD"] = ["FINAL(too late)"]
    query = script(["```repl\nr = rlm_query('WALLCHILD count them')\n```", "FINAL(parent on)"])
    server.stall_next(1, 0.0)  # the root's first turn
    server.stall_next(1, STALL_S)  # the child's first turn hangs
    started = time.monotonic()
    result = hv.execute(_task(query, maxDepth=2))
    took = time.monotonic() - started
    assert result.status == "completed", result.error
    assert result.output == "parent on"
    assert took < WITHIN_S, f"the parent's cell waited {took:.1f} s for its child"
    assert result.agent_calls == 2 and result.decomposition_depth == 0
    events = hv.trajectory(result.task_id).events
    ended = [e.data for e in events if e.event == "rlm.child" and e.data["phase"] == "ended"]
    assert len(ended) == 1 and "wall time" in ended[0]["error"]
    assert hv.rlm_sessions()[0]["tasks"].get(result.task_id, []) == []
