"""The scheduler's shortcuts for trees of short calls (issue 18), on a real engine.

A built-in operation's combine over small partials runs on the core's in-process agent, and a
vectorised built-in operation's first leaves travel in batches. Results must not change: a
combine whose partials are object references (large ones) still runs on an agent, and a
user's combine never runs in the core.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
import ray

import rlm
from rlm.config import EngineSettings
from rlm.operations import OperationRegistry, default_registry
from rlm.planning import plan_task
from rlm.runtime.run import Run, TaskSpec
from rlm.runtime.scheduler import Scheduler, _first_batch
from rlm.tasks.events import EventLog
from rlm.tasks.record import TaskRecord
from tests.integration import ops as test_ops

pytestmark = pytest.mark.integration


def _spec(op_name: str, n: int, leaf_size: int, registry: OperationRegistry) -> TaskSpec:
    op = registry.get(op_name)
    return TaskSpec(
        task_id="task-" + "0" * 32,
        type="recursive",
        description="policy",
        priority="normal",
        owner_id="local",
        org_id=None,
        team_id=None,
        request={},
        operation=op,
        params=op.parse_params({}),
        items=("inline", []),
        plan=plan_task("recursive", n, leaf_size=leaf_size, fanout=4),
        timeout_ms=None,
    )


def _run(spec: TaskSpec) -> Run:
    record = TaskRecord(
        task_id=spec.task_id,
        status="pending",
        created_at=datetime.now(UTC),
        type=spec.type,
        description=spec.description,
        priority=spec.priority,
        owner_id=spec.owner_id,
        org_id=None,
        team_id=None,
        request={},
        planned_calls=spec.plan.agent_calls,
    )
    return Run(spec=spec, seq=1, record=record, op_bytes=b"", events=EventLog(spec.task_id))


def test_tree_of_2m_float64_matches_numpy(hv: rlm.Hypervisor) -> None:
    # The benchmark's shape: 16 leaves of 125,000, combines of 4, a root.
    arr = np.random.default_rng(7).random(2_000_000)
    request = {
        "type": "recursive",
        "description": "2M float64",
        "input": {"items": arr, "operation": "sum"},
        "options": {"leafSize": 125_000, "fanout": 4},
    }
    for _ in range(3):  # warm and cold input caches alike
        result = hv.execute(request)
        assert result.status == "completed", result.error
        assert result.output == pytest.approx(float(arr.sum()), rel=1e-12)
        assert (result.agent_calls, result.decomposition_depth) == (21, 2)


@pytest.mark.parametrize("leaf_size", [25, 500])
def test_sort_with_small_and_large_partials(hv: rlm.Hypervisor, leaf_size: int) -> None:
    # Leaves of 25 answer inline (combined in the core); leaves of 500 are larger than the
    # inline bound, so they answer object references and their combines run on agents.
    items = [int(x) for x in np.random.default_rng(leaf_size).integers(-1000, 1000, 4000)]
    result = hv.execute(
        {
            "type": "recursive",
            "description": "sort",
            "input": {"items": items, "operation": "sort"},
            "options": {"leafSize": leaf_size, "fanout": 4},
        }
    )
    assert result.status == "completed", result.error
    assert result.output == sorted(items)


def test_a_users_combine_never_runs_in_the_core(hv: rlm.Hypervisor) -> None:
    info = hv.engine_info()
    result = hv.execute(
        {
            "type": "recursive",
            "description": "pids",
            "input": {"items": list(range(64)), "operation": "where_pids"},
            "options": {"leafSize": 4, "fanout": 4},
        }
    )
    assert result.status == "completed", result.error
    assert result.agent_calls == 16 + 4 + 1
    agents = set(info["pids"])
    assert set(result.output["leaves"]) <= agents
    assert len(result.output["combines"]) == 5
    assert set(result.output["combines"]) <= agents
    assert info["corePid"] not in result.output["combines"]


def test_a_users_functions_never_run_in_the_core(hv: rlm.Hypervisor) -> None:
    # Registered as functions (a FunctionOperation, a class of the engine's own package):
    # still the user's code, so neither a one-call task nor a combine runs in the core.
    hv.operation("where_pid_fns", combine=test_ops.pid_combine, replace=True)(test_ops.pid_leaf)
    info = hv.engine_info()
    one = hv.execute(
        {
            "type": "recursive",
            "description": "one call",
            "input": {"items": [1, 2, 3], "operation": "where_pid_fns"},
        }
    )
    assert one.status == "completed", one.error
    assert one.agent_calls == 1
    assert set(one.output["leaves"]) <= set(info["pids"])
    tree = hv.execute(
        {
            "type": "recursive",
            "description": "tree",
            "input": {"items": list(range(64)), "operation": "where_pid_fns"},
            "options": {"leafSize": 4, "fanout": 4},
        }
    )
    assert tree.status == "completed", tree.error
    assert len(tree.output["combines"]) == 5
    assert set(tree.output["leaves"]) | set(tree.output["combines"]) <= set(info["pids"])


def test_which_combines_run_in_the_core(ray_session: None) -> None:
    registry = default_registry()
    registry.register(test_ops.WherePids())
    builtin = _run(_spec("sum", 64, 4, registry))
    combine = next(n for n in builtin.spec.plan.nodes if n.kind == "combine")
    leaf = next(n for n in builtin.spec.plan.nodes if n.kind == "leaf")
    builtin.partials.update(dict.fromkeys(combine.children, 1.5))
    assert Scheduler._combines_locally(builtin, combine)
    assert not Scheduler._combines_locally(builtin, leaf)
    # One child's partial is an object reference (a large partial): the combine goes to an
    # agent, which reads it from the object store.
    builtin.partials[combine.children[0]] = ray.put(1.5)
    assert not Scheduler._combines_locally(builtin, combine)
    users = _run(_spec("where_pids", 64, 4, registry))
    users.partials.update({c: {"leaves": [], "combines": []} for c in combine.children})
    assert not Scheduler._combines_locally(users, combine)


def test_first_batches_are_sized_from_the_items() -> None:
    registry = default_registry()
    registry.register(test_ops.WherePids())

    def first(op: str, leaf_size: int) -> int:
        spec = _spec(op, 16 * leaf_size, leaf_size, registry)
        return _first_batch(spec, spec.plan.leaves[0])

    # ~2 ns an item, 5 ms a message: leaves of 125,000 go 20 at a time; leaves of 1 are
    # counted at the 50 us a call costs anyway (100 a message); leaves of 10M alone.
    assert first("sum", 125_000) == 20
    assert first("sum", 1) == 100
    assert first("sum", 10_000_000) == 1
    # A user's operation, or a built-in over anything but numbers: unknown cost, one a message.
    assert first("where_pids", 125_000) == 1
    assert first("sort", 125_000) == 1


def test_which_tasks_run_in_the_core() -> None:
    registry = default_registry()
    registry.register(test_ops.WherePids())

    def in_core(
        op: str, n: int, items: tuple[object, ...] = ("ref", [], "k"), leaf: int = 125_000
    ) -> bool:
        spec = _spec(op, n, leaf, registry)
        return Scheduler.runs_in_core(dataclasses.replace(spec, items=items))

    # The cut-off: the items' declared cost plus 20 us a call against one message's budget
    # (5 ms). 2M float64 in 21 calls: 4.42 ms; 2.4M in 53 calls: 5.86 ms.
    assert in_core("sum", 2_000_000)
    assert not in_core("sum", 2_400_000)
    # One call: 200 ns an item + 20 us.
    assert in_core("variance", 24_800)  # 4.98 ms
    assert not in_core("variance", 25_000)  # 5.02 ms
    # Few items in many calls: 3,999 one-item leaves cost the core's loop ~80 ms of calls.
    assert not in_core("sum", 3_999, leaf=1)
    assert in_core("sum", 10, ("inline", np.arange(10)))
    # A file's ranges are read by the leaves; a user's operation never runs in the core; a
    # built-in with no declared cost (a histogram, a product of big ints) neither.
    assert not in_core("sum", 1_000, ("source", None, [], None, False))
    assert not in_core("where_pids", 10)
    assert not in_core("product", 10)


async def _scheduled(scheduler: Scheduler, runs: list[Run]) -> dict[str, object]:
    finished: dict[str, object] = {}
    done = asyncio.Event()

    async def finish(run: Run, partial: object) -> None:
        finished[run.spec.task_id] = run.spec.operation.finish(partial, run.spec.params)
        if len(finished) == len(runs):
            done.set()

    async def stop(run: Run, status: str, error: object) -> None:
        raise AssertionError(f"{run.spec.task_id} stopped: {status} {error}")

    scheduler._finish, scheduler._stop = finish, stop
    for run in runs:
        scheduler.add(run)
    await asyncio.wait_for(done.wait(), 60)
    return finished


def test_small_vectorised_tasks_run_in_the_core_large_ones_on_the_pool(
    ray_session: None,
) -> None:
    # Both sides of the cut-off through a real scheduler, a real agent actor and the object
    # store: which agents took the input says where the leaves ran.
    registry = default_registry()
    rng = np.random.default_rng(3)
    small, large = rng.random(2_000_000), rng.random(3_000_000)
    runs = []
    for name, arr in (("small", small), ("large", large), ("var", small[:100_000])):
        op = "variance" if name == "var" else "sum"
        spec = _spec(op, arr.size, 125_000, registry)
        task_id = f"task-{name}"
        ref = ray.put(arr)
        # The operation is pickled for the pool's agent when a call first goes there.
        runs.append(_run(dataclasses.replace(spec, task_id=task_id, items=("ref", [ref], task_id))))

    async def go() -> tuple[dict[str, object], list[set[int]]]:
        scheduler = Scheduler(EngineSettings(agents=1), 1, finish=_never, stop=_never)
        try:
            out = await _scheduled(scheduler, runs)
            return out, [set(run.has_input) for run in runs]
        finally:
            for run in runs:
                scheduler.forget_input(run)
            ray.kill(scheduler._agents[0])

    out, took_input = asyncio.run(go())
    assert out["task-small"] == pytest.approx(float(small.sum()), rel=1e-12)
    assert out["task-large"] == pytest.approx(float(large.sum()), rel=1e-12)
    assert out["task-var"] == pytest.approx(float(small[:100_000].var()), rel=1e-12)
    # 2M float64 sums cost ~4 ms at the declared 2 ns an item: the core's agent (-1) read the
    # input. 3M (6 ms), and a variance of 100,000 (20 ms at 200 ns an item), went to the
    # pool's agent (0).
    assert took_input == [{-1}, {0}, {0}]


async def _never(*args: object) -> None:
    raise AssertionError("replaced by _scheduled")


def test_an_execute_the_core_runs_whole_takes_its_input_with_the_call(
    hv: rlm.Hypervisor,
) -> None:
    # The caller of execute waits, so it may own the input: no holder round trip. A submit
    # (the caller may exit), or an input past the cut-off, goes to the input holder.
    arr = np.random.default_rng(11).random(2_000_000)

    def request(items: np.ndarray[Any, Any]) -> dict[str, Any]:
        return {
            "type": "recursive",
            "description": "inline",
            "input": {"items": items, "operation": "sum"},
            "options": {"leafSize": 125_000, "fanout": 4},
        }

    assert hv.prepare(request(arr), waits=True).items[0] == "inline"
    assert hv.prepare(request(arr)).items[0] == "ref"
    big = np.concatenate([arr, arr])
    assert hv.prepare(request(big), waits=True).items[0] == "ref"
    for items in (arr, big):
        result = hv.execute(request(items))
        assert result.status == "completed", result.error
        assert result.output == pytest.approx(float(items.sum()), rel=1e-12)
