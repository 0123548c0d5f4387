"""One local Ray per test session (num_cpus=2), and engines on temporary state directories."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from ray import cloudpickle

import rlm
from rlm.config import EngineSettings, Settings
from rlm.webhooks.settings import WebhookSettings
from tests import engines
from tests.integration import ops as test_ops

# The test operations live in this test package, which Ray's workers cannot import: ship them
# by value, as Ray does for functions a notebook defines.
cloudpickle.register_pickle_by_value(test_ops)


#: Webhooks for tests: receivers on loopback over http, retries within a second or two.
TEST_WEBHOOKS = WebhookSettings(
    allow_http=True,
    allow_loopback=True,
    attempt_timeout_s=2.0,
    retry_base_s=0.2,
    retry_factor=2.0,
    retry_max_delay_s=1.0,
    poll_interval_s=0.5,
)


def make_settings(state_dir: Path, **engine: object) -> Settings:
    """Settings for an engine of two agents on ``state_dir``."""
    return Settings(
        state_dir=state_dir,
        engine=EngineSettings(agents=2, cancel_grace_s=5.0, **engine),  # type: ignore[arg-type]
        webhooks=TEST_WEBHOOKS,
    )


def with_test_ops(hv: rlm.Hypervisor) -> rlm.Hypervisor:
    """Register the slow and failing operations the tests use."""
    for op in test_ops.OPERATIONS:
        hv.register_operation(op, replace=True)
    return hv


@pytest.fixture(scope="package")
def hv(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[rlm.Hypervisor]:
    """The integration tests' shared engine, stopped when they are done (the unit tests
    after them do not pay for its idle actors)."""
    settings = make_settings(tmp_path_factory.mktemp("engine"))
    hv = with_test_ops(rlm.connect(settings=settings))
    engines.keep(settings)
    yield hv
    engines.release(settings)
    hv.shutdown_engine()
    engines.reap()


@pytest.fixture(scope="module", autouse=True)
def _reap_engines() -> Iterator[None]:
    """After each module, stop the engines it started and left (and their audit writers)."""
    yield
    engines.reap()


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_DEDUP_LOGS", "0")
    os.environ.pop("RLM_STATE_DIR", None)
