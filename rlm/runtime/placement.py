"""Where the engine's actors run on a cluster of several nodes.

The state (SQLite files under ``RLM_STATE_DIR``) lives on one node's disk: the head's, where
``ray start --head`` runs and where cluster.yaml and the KubeRay RayService keep it. The actors
that open those files (the engine's core, the security actor) are pinned to the head, whichever
process (a job's driver, a Serve replica on a worker node) starts them. Agents hold no state:
they spread over every node, so a task's calls use the whole cluster (on one node, ``SPREAD``
places them all there, as before).
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["AGENT_OPTIONS", "ON_HEAD"]

#: Ray's resource every head node has (``ray._common.constants.HEAD_NODE_RESOURCE_NAME``); a
#: token amount of it pins an actor to the head without taking anything from other actors.
_HEAD_RESOURCE: Final = "node:__internal_head__"

#: Actor options of the actors that open the state files: on the head node.
ON_HEAD: Final[dict[str, Any]] = {"resources": {_HEAD_RESOURCE: 0.001}}

#: Actor options of the agents: spread over the cluster's nodes.
AGENT_OPTIONS: Final[dict[str, Any]] = {"scheduling_strategy": "SPREAD"}
