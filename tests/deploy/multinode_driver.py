"""The driver of the multi-node test: ``python -m tests.deploy.multinode_driver``.

It runs in a process of its own (the test session has its own Ray), joins a cluster of two
raylets, and reports each phase as one JSON line on stdout:

1. ``spread``: a task whose leaves return the node they ran on; the pool's agents are spread
   over both nodes, so the task's leaves see both.
2. ``loss``: a long task is submitted; once it runs, the worker node is lost (its whole process
   group is SIGKILLed, as a machine that dies); the task must end — failed with a clear error,
   or completed — within a bound, never hang.
3. ``heal``: the next task completes, and every agent of the pool answers again (Ray restarted
   those of the lost node on the node left).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ray

import rlm
from rlm.config import EngineSettings, Settings

#: The bound on each wait: generous for a loaded 2-core machine, but a bound.
WAIT_S = 120.0


def _leaf(chunk: Any, params: Any) -> list[str]:
    """Sleep ``params['sleepS']`` (checking for a cancel), then name the node this ran on."""
    import ray as ray_in_agent

    from rlm.operations.context import check_cancelled

    deadline = time.monotonic() + float(params.get("sleepS", 0.0))
    while time.monotonic() < deadline:
        check_cancelled()
        time.sleep(0.05)
    return [ray_in_agent.get_runtime_context().get_node_id()]


def _combine(partials: Sequence[list[str]], params: Any) -> list[str]:
    return sorted({node for partial in partials for node in partial})


def _request(leaves: int, sleep_s: float, what: str) -> dict[str, Any]:
    """A tree of ``leaves`` leaves of one item each, each taking ``sleep_s``."""
    return {
        "type": "recursive",
        "description": what,
        "input": {
            "items": list(range(leaves)),
            "operation": "where_ran",
            "params": {"sleepS": sleep_s},
        },
        "options": {"leafSize": 1, "fanout": 4, "timeoutMs": 300_000},
    }


def _say(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def _bounded(call: Any, timeout: float) -> tuple[bool, Any]:
    """``call()`` in a thread, waited for at most ``timeout`` seconds: ``(finished, value)``;
    what it raised is raised here."""
    out: list[Any] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            out.append(call())
        except BaseException as err:
            failed.append(err)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    if failed:
        raise failed[0]
    return (bool(out), out[0] if out else None)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--cpus", type=int, required=True, help="the two nodes' CPUs")
    parser.add_argument("--kill-pgid", type=int, required=True, help="the worker node's group")
    args = parser.parse_args(argv)

    settings = Settings(
        state_dir=Path(args.state_dir),
        engine=EngineSettings(agents=args.agents, cancel_grace_s=5.0),
    )
    ray.init(address=args.address, namespace=settings.namespace, log_to_driver=False)
    # Both nodes in the cluster's resource view before the pool is placed over it.
    seen_since = time.monotonic()
    while ray.cluster_resources().get("CPU", 0) < args.cpus:
        if time.monotonic() - seen_since > WAIT_S:
            _say(phase="nodes", error=f"the cluster has not {args.cpus} CPUs")
            return 1
        time.sleep(0.2)
    # ... and in each raylet's view of the other (a task sent from one node with a soft
    # affinity for the other runs there only once that node's raylet lists the other).
    if not _raylets_see_each_other(seen_since + WAIT_S):
        _say(phase="nodes", error="the raylets never listed each other")
        return 1
    hv = rlm.connect(settings=settings)
    hv.register_operation("where_ran", leaf=_leaf, combine=_combine)
    hv.security()  # started on first use: start it, to see where it runs
    started = time.monotonic()
    while "_SecurityShell" not in _placements() and time.monotonic() - started < WAIT_S:
        time.sleep(0.2)
    nodes = {n["NodeID"]: n for n in ray.nodes() if n["Alive"]}
    head = next(i for i, n in nodes.items() if "node:__internal_head__" in n["Resources"])
    _say(phase="nodes", head=head, nodes=sorted(nodes), actors=_placements())

    # 1. Spread: 16 leaves of 0.3 s over the pool.
    result = hv.execute(_request(16, 0.3, "where do the leaves run"))
    _say(phase="spread", status=result.status, seen=result.output, error=_error(result))

    # 2. Loss: 48 leaves of 1 s; the worker node goes once a few calls have finished.
    task_id = hv.submit(_request(48, 1.0, "lose a node under me"))
    running_since = time.monotonic()
    while time.monotonic() - running_since < WAIT_S:
        status = hv.status(task_id)
        if status.progress is not None and status.progress.current >= 2:
            break
        time.sleep(0.1)
    progress = hv.status(task_id).progress
    os.killpg(args.kill_pgid, signal.SIGKILL)
    lost_at = time.monotonic()
    try:
        ended = hv.result(task_id, timeout=WAIT_S)
    except TimeoutError:
        _say(phase="loss", status="hang", waitedS=round(time.monotonic() - lost_at, 1))
        return 1
    _say(
        phase="loss",
        status=ended.status,
        error=_error(ended),
        callsBeforeLoss=progress.current if progress else None,
        endedAfterS=round(time.monotonic() - lost_at, 1),
    )

    # 3. Heal: the next task completes at once on the agents left; then Ray declares the
    # node dead and restarts its agents on the head, and the whole pool answers again.
    healing_from = time.monotonic()
    for what in ("right after the loss", "once the pool has healed"):
        if what == "once the pool has healed":
            pids = _whole_pool(hv, args.agents, healing_from + WAIT_S)
            if pids is None:
                _say(phase="heal", status="pool never healed", actors=_placements())
                return 1
        next_id = hv.submit(_request(8, 0.2, what))
        try:
            after = hv.result(next_id, timeout=WAIT_S)
        except TimeoutError:
            _say(phase="heal", status="hang", waitedS=round(time.monotonic() - healing_from, 1))
            return 1
        _say(
            phase="heal",
            when=what,
            status=after.status,
            seen=after.output,
            error=_error(after),
            aliveNodes=sorted(n["NodeID"] for n in ray.nodes() if n["Alive"]),
            agents=_placements().get("Agent", []),
            afterS=round(time.monotonic() - healing_from, 1),
        )
    hv.shutdown_engine()
    return 0


@ray.remote(num_cpus=0)
def _node_id() -> str:
    return str(ray.get_runtime_context().get_node_id())


@ray.remote(num_cpus=0)
def _reaches(target: str) -> str:
    """Where a task sent from here (this node's raylet decides) with a soft affinity for
    ``target`` runs: ``target`` once this node's raylet lists it."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    strategy = NodeAffinitySchedulingStrategy(target, soft=True)
    return str(ray.get(_node_id.options(scheduling_strategy=strategy).remote()))


def _raylets_see_each_other(deadline: float) -> bool:
    """Whether every node's raylet lists every other node (a raylet places an actor with its
    own view of the cluster, and a node that has just joined may be missing from it, either
    way round: the pool's agents would then all land on one node)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
    pairs = [(a, b) for a in nodes for b in nodes if a != b]
    while time.monotonic() < deadline:
        reached = ray.get(
            [
                _reaches.options(
                    scheduling_strategy=NodeAffinitySchedulingStrategy(a, soft=False)
                ).remote(b)
                for a, b in pairs
            ]
        )
        if all(got == b for (_, b), got in zip(pairs, reached, strict=True)):
            return True
        time.sleep(0.2)
    return False


def _whole_pool(hv: rlm.Hypervisor, agents: int, deadline: float) -> list[int] | None:
    """Every agent's pid once all of them answer (restarted ones included), by ``deadline``."""
    while time.monotonic() < deadline:
        try:
            finished, pids = _bounded(hv.agent_pids, max(1.0, deadline - time.monotonic()))
        except Exception:  # an agent not restarted yet: ask again
            finished, pids = False, None
        if finished and pids is not None and len(pids) == agents:
            return list(pids)
        time.sleep(0.5)
    return None


def _placements() -> dict[str, list[str]]:
    """The node of each live actor of this driver's engine, by class.

    Only this job's actors: the engine's core is created by this driver and every other actor
    of the engine by the core, so all carry this job's id. Another engine on the same cluster
    (one a ``serve run`` or a job of an earlier test started: its detached actors outlive
    ``serve shutdown``) would otherwise add its agents to this pool's count.
    """
    from ray._private import state

    job = ray.get_runtime_context().get_job_id()
    where: dict[str, list[str]] = {}
    for actor in state.actors().values():
        if actor.get("State") == "ALIVE" and actor.get("JobID") == job:
            node = actor.get("Address", {}).get("NodeID", "?")
            where.setdefault(actor.get("ActorClassName", "?"), []).append(node)
    return where


def _error(result: Any) -> dict[str, Any] | None:
    error = getattr(result, "error", None)
    if error is None:
        return None
    dumped: dict[str, Any] = error.model_dump(mode="json", by_alias=True)
    return dumped


if __name__ == "__main__":
    sys.exit(main())
