"""The accountant's batched admission path, through the engine's core actor."""

from __future__ import annotations

import uuid

import pytest

import rlm
from rlm.errors import InvalidInput, QuotaExceeded
from rlm.models.quotas import QuotaConfig


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
