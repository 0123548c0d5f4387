"""Where the engine's actors run on a cluster of several nodes.

The state (SQLite files under ``RLM_STATE_DIR``) lives on one node's disk: the head's, where
``ray start --head`` runs and where cluster.yaml and the KubeRay RayService keep it. The actors
that open those files (the engine's core, the security actor) are pinned to the head, whichever
process (a job's driver, a Serve replica on a worker node) starts them. Agents hold no state:
they spread over every node, so a task's calls use the whole cluster.

The agents are dealt to the nodes in proportion to their CPUs (``agent_options``), each with a
*soft* node affinity, rather than left to Ray's ``SPREAD``: an agent needs no CPU of its own, so
``SPREAD`` counts every node alike (a head with ``num-cpus: 0`` got as many agents as a worker
with 16), and it decides with the view of whichever raylet the request reached, which may not
list a node that has just joined. Soft: when a node is lost, Ray restarts its agents on the
nodes left.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import cycle, islice
from typing import Any, Final

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

__all__ = ["AGENT_OPTIONS", "ON_HEAD", "agent_nodes", "agent_options"]

#: Ray's resource every head node has (``ray._common.constants.HEAD_NODE_RESOURCE_NAME``); a
#: token amount of it pins an actor to the head without taking anything from other actors.
_HEAD_RESOURCE: Final = "node:__internal_head__"

#: Actor options of the actors that open the state files: on the head node.
ON_HEAD: Final[dict[str, Any]] = {"resources": {_HEAD_RESOURCE: 0.001}}

#: Actor options of an agent when no node has a CPU to deal agents by.
AGENT_OPTIONS: Final[dict[str, Any]] = {"scheduling_strategy": "SPREAD"}


def agent_nodes(nodes: Sequence[Mapping[str, Any]], agents: int) -> list[str | None]:
    """The node each of ``agents`` agents goes to, dealt in proportion to the nodes' CPUs.

    The nodes take turns, a node with more CPUs more often (one turn per CPU, interleaved:
    a 2-CPU head and a 1-CPU worker give head, worker, head, head, worker, …), so every node
    with a CPU gets an agent as soon as there are enough agents.

    Args:
        nodes: Ray's node records (``ray.nodes()``): ``NodeID``, ``Alive``, ``Resources``.
        agents: How many agents to place.

    Returns:
        One node id per agent; ``None`` for every agent when no live node has a CPU.
    """
    cpus = {
        str(n["NodeID"]): int(n.get("Resources", {}).get("CPU", 0)) for n in nodes if n.get("Alive")
    }
    turns: list[str] = []
    for round_ in range(max(cpus.values(), default=0)):
        turns.extend(node for node, n in sorted(cpus.items()) if n > round_)
    if not turns:
        return [None] * agents
    return list(islice(cycle(turns), agents))


def agent_options(agents: int) -> list[dict[str, Any]]:
    """Actor options for each agent of a pool of ``agents`` (see :func:`agent_nodes`)."""
    return [
        AGENT_OPTIONS
        if node is None
        else {"scheduling_strategy": NodeAffinitySchedulingStrategy(node, soft=True)}
        for node in agent_nodes(ray.nodes(), agents)
    ]
