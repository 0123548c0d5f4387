"""How the agent pool is dealt to a cluster's nodes (``rlm.runtime.placement.agent_nodes``)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from rlm.runtime.placement import agent_nodes


def _node(node_id: str, cpus: float, *, alive: bool = True) -> dict[str, Any]:
    resources: dict[str, float] = {"memory": 1e9}
    if cpus:
        resources["CPU"] = cpus
    return {"NodeID": node_id, "Alive": alive, "Resources": resources}


def test_a_two_cpu_head_and_a_one_cpu_worker_share_four_agents() -> None:
    nodes = [_node("head", 2), _node("worker", 1)]
    assert agent_nodes(nodes, 4) == ["head", "worker", "head", "head"]


def test_a_head_without_cpus_and_dead_nodes_get_no_agents() -> None:
    nodes = [_node("head", 0), _node("gone", 8, alive=False), _node("a", 2), _node("b", 2)]
    assert Counter(agent_nodes(nodes, 8)) == {"a": 4, "b": 4}


def test_no_node_with_a_cpu_leaves_the_choice_to_ray() -> None:
    assert agent_nodes([_node("head", 0)], 3) == [None, None, None]
    assert agent_nodes([], 2) == [None, None]


@given(
    cpus=st.lists(st.integers(min_value=0, max_value=16), min_size=1, max_size=6),
    agents=st.integers(min_value=1, max_value=64),
)
def test_agents_follow_the_cpus(cpus: list[int], agents: int) -> None:
    nodes = [_node(f"n{i}", c) for i, c in enumerate(cpus)]
    placed = agent_nodes(nodes, agents)
    assert len(placed) == agents
    with_cpus = [f"n{i}" for i, c in enumerate(cpus) if c > 0]
    if not with_cpus:
        assert placed == [None] * agents
        return
    counts = Counter(placed)
    assert set(counts) <= set(with_cpus)
    # Every node with a CPU has an agent once there are enough agents to go round.
    if agents >= len(with_cpus):
        assert set(counts) == set(with_cpus)
    # A pool the size of the cluster's CPUs gives each node exactly one agent per CPU.
    total = sum(cpus)
    if agents == total:
        assert counts == {f"n{i}": c for i, c in enumerate(cpus) if c > 0}
