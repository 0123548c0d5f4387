"""A cancelled task whose leaf never polls for the cancel keeps its lease and quota hold until
its agent is really free: the caller cannot pile more work onto agents still busy with it.

Run on both state stores (SQLite, then PostgreSQL): the lease and the hold are the store's."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.api.conftest import Api
from tests.support import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api(api_on_each_store: Api) -> Api:
    """This suite runs on both state stores: SQLite, then PostgreSQL (leases and holds are
    rows of the store)."""
    return api_on_each_store


def test_lease_and_quota_are_held_until_the_never_polling_leaf_stops(
    api: Api, tmp_path: Path
) -> None:
    started, release = tmp_path / "started", tmp_path / f"release-{uuid.uuid4().hex}"
    body = {
        "type": "parallel",
        "description": "a leaf that ignores cancels",
        "input": {
            "items": [1, 2, 3],
            "operation": "stubborn",
            "params": {"started": str(started), "release": str(release)},
        },
        "options": {"async": True},
    }
    token = api.token(scopes="rlm:execute rlm:read rlm:quota:read", tier="power_user")
    with api.client(token) as client:

        def held() -> tuple[int, int]:
            status = client.get("/quotas/user/me").json()
            return status["currentConcurrentAgents"], status["daily"]["agentsUsed"]

        assert held() == (0, 0)
        submitted = client.post("/execute", json=body)
        assert submitted.status_code == 202, submitted.text
        task_id = submitted.json()["taskId"]
        wait_until(started.exists, 60, "the leaf runs")
        assert held() == (1, 1)  # one agent leased, its one planned call held
        try:
            cancelled = client.post(f"/tasks/{task_id}/cancel")  # after the cancel grace
            assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
            assert client.get(f"/tasks/{task_id}").json()["status"] == "cancelled"
            # The task has ended for its caller, but its agent is still busy with it.
            busy = client.get("/health").json()["engine"]
            assert held() == (1, 1), busy
        finally:
            release.touch()
        # Once the leaf really stops, everything is given back (the cancelled call is not
        # charged).
        wait_until(lambda: held() == (0, 0), 60, lambda: f"the hold is released: {held()}")
