"""The accountant's batched admission path, through the engine's core actor."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import ray

import rlm
from rlm.admission import Admission
from rlm.auth.tiers import TIERS
from rlm.errors import InvalidInput, QuotaExceeded
from rlm.models.quotas import QuotaConfig
from tests.integration.conftest import make_settings, with_test_ops
from tests.support import wait_until


def test_a_batch_of_admissions_crosses_the_actor_once(hv: rlm.Hypervisor) -> None:
    user = f"batch-{uuid.uuid4().hex[:8]}"
    hv.quotas(
        "set_user_config",
        QuotaConfig(
            user_id=user,
            daily_agent_limit=10,
            weekly_agent_limit=100,
            monthly_agent_limit=100,
            daily_compute_hours=1.0,
            max_concurrent_agents=10,
            max_storage_gb=1.0,
        ),
    )
    kw = {"tier": "user"}
    held = hv.quota_batch(
        [("reserve", (user, 4), {**kw, "task_id": f"{user}-{i}"}) for i in range(3)]
    )
    # 4 + 4 fit in 10; the third is refused as it would be alone, with its details.
    assert isinstance(held[2], QuotaExceeded)
    assert held[2].details["resource"] == "agents"
    assert held[2].details["used"] == 8
    assert hv.quotas("user_status", user).current_concurrent_agents == 2
    settled = hv.quota_batch(
        [("reconcile", (r.reservation_id, 3, 0.0), {}) for r in held[:2]]
        + [("user_status", (user,), {})]
    )
    assert [s.agent_calls for s in settled[:2]] == [3, 3]
    status = settled[2]
    assert status.daily.agents_used == 6
    assert status.current_concurrent_agents == 0
    with pytest.raises(InvalidInput, match="cannot be batched"):
        hv.quota_batch([("set_user_config", (), {})])


def test_holds_no_running_task_owns_are_reaped(ray_session: None, tmp_path: Path) -> None:
    hv = with_test_ops(rlm.connect(settings=make_settings(tmp_path, quota_hold_ttl_s=1.0)))
    try:
        orphan = hv.quota_batch(
            [
                ("reserve", ("orphan", 3), {"tier": "user", "task_id": "gone"}),
                ("reserve_tokens", ("orphan", 500), {"task_id": "gone"}),
            ]
        )
        assert hv.quotas("user_status", "orphan").current_concurrent_agents == 1
        # A task admitted like an HTTP request holds its quota while it runs, however long.
        admission = Admission("user:runner", TIERS["user"], user_id="runner", tier="user")
        spec = hv.prepare(
            {
                "type": "parallel",
                "description": "slow",
                "input": {"items": [1, 2], "operation": "slow_sum", "params": {"seconds": 12}},
                "options": {"leafSize": 2},
            },
            owner_id="runner",
        )
        kind, task_id, _ = ray.get(hv._core.submit.remote(spec, admission))
        assert kind == "ok"
        wait_until(
            lambda: hv.quotas("user_status", "orphan").current_concurrent_agents == 0,
            15,
            "the orphaned hold is released",
            interval=0.2,
        )
        assert hv.status(task_id).status == "running"
        runner = hv.quotas("user_status", "runner")
        assert (runner.current_concurrent_agents, runner.daily.agents_used) == (1, 1)
        assert hv.quotas("open_reservations", "orphan") == []
        assert hv.quotas("open_token_holds", "orphan") == []  # reaped in the same pass
        assert hv.result(task_id).output == 3
        assert hv.quotas("user_status", "runner").current_concurrent_agents == 0
        assert hv.quotas("user_status", "orphan").daily.agents_used == 0  # released, not charged
        assert orphan[0].task_id == "gone"
    finally:
        hv.shutdown_engine()
