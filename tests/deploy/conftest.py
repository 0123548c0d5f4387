"""One Ray cluster of its own (``ray start --head``, 2 CPUs) for the deployment tests.

The cluster is started as an operator starts one, with the project's settings in its nodes'
environment: a state directory, and an LM provider (the OOLONG oracle on loopback, standing in
for a paid API). Jobs, ``serve run`` and ``serve deploy`` all reach it through Ray's own CLIs.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rlm.eval.data import label_map, load_instances
from rlm.testing import FakeLMServer
from rlm.testing.oolong_oracle import oolong_responder
from tests.deploy.ray_cluster import RayNode, cluster_env, start_head
from tests.shared_data import shared_file

#: The OOLONG data the evaluation job reads (beside the checkout, like every shared file).
OOLONG_DATA = "data/oolong/trec_coarse_validated.jsonl"


@dataclass
class DeployCluster:
    """The running test cluster: its head node, the environment its CLIs run in, and the
    state directory its engine keeps its records in."""

    head: RayNode
    env: dict[str, str]
    state_dir: Path
    data: Path


@pytest.fixture(scope="package")
def oracle_lm() -> Iterator[FakeLMServer]:
    """The cluster's LM provider: the OOLONG oracle behind an OpenAI-compatible server."""
    data = shared_file(OOLONG_DATA)
    with FakeLMServer(responder=oolong_responder(label_map(load_instances(data)))) as server:
        yield server


@pytest.fixture(scope="package")
def cluster(oracle_lm: FakeLMServer) -> Iterator[DeployCluster]:
    state_dir = Path(tempfile.mkdtemp(prefix="rlm-deploy-state-"))
    env = cluster_env(
        state_dir,
        RLM_LM__BASE_URL=oracle_lm.url,
        RLM_LM__API_KEY="test-key",
        RLM_LM__MODEL="fake-model",
        # Two agents on a 2-CPU cluster (the default: one per CPU), said for clarity.
        RLM_ENGINE__AGENTS="2",
        # What serve_app/config.yaml asks of every node: the proxy guard's callback.
        RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH="serve_app.guard:proxy_middlewares",
    )
    try:
        with start_head(env, num_cpus=2) as head:
            yield DeployCluster(head, env, state_dir, shared_file(OOLONG_DATA))
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
