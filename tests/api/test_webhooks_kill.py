"""Pending webhook deliveries survive killing the service.

A real ``rlm serve`` (:mod:`tests.api.serve_process`, its own local Ray, SQLite in its state
directory) queues deliveries for a receiver that is down, and is then killed with SIGKILL — the
process and every process it started: its Ray, the engine's core, the delivery worker — so no
shutdown code runs. ``rlm serve`` started again on the same state directory sends them: the
receiver, up by then, gets each event once, under the ``webhook-id`` its failed attempts carried.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from pathlib import Path

import pytest
from pydantic import SecretStr

from rlm.auth.keys import load_signing_key
from rlm.auth.settings import AuthSettings
from rlm.auth.tokens import issue_token
from rlm.models import Delivery
from rlm.testing import WebhookReceiver
from rlm_hypervisor import RLMClient
from rlm_hypervisor.webhooks import verify
from tests.api.serve_process import free_port, kill_tree, rlm_serve
from tests.support import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECRET = "webhooks-kill-test-hmac-secret-" + "k" * 16
SUM = {"type": "recursive", "description": "s", "input": {"items": [1, 2, 3], "operation": "sum"}}


def _token(sub: str) -> str:
    auth = AuthSettings(secret=SecretStr(SECRET))
    key = load_signing_key(auth, Path("/nonexistent-state-dir"), "development")
    return issue_token(sub, ["rlm:execute", "rlm:read"], "user", settings=auth, key=key)


def test_pending_deliveries_survive_killing_rlm_serve(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RLM_")}
    env.pop("RAY_ADDRESS", None)
    env.update(
        {
            "RLM_STATE_DIR": str(tmp_path),
            "RLM_AUTH__SECRET": SECRET,
            "RLM_ENGINE__AGENTS": "1",
            "RLM_WEBHOOKS__ALLOW_HTTP": "true",
            "RLM_WEBHOOKS__ALLOW_LOOPBACK": "true",
            # Retried about every second while the receiver is down, so that each delivery
            # has failed before the kill and is due again soon after the restart.
            "RLM_WEBHOOKS__RETRY_BASE_S": "0.2",
            "RLM_WEBHOOKS__RETRY_MAX_DELAY_S": "1.0",
            "RLM_WEBHOOKS__POLL_INTERVAL_S": "0.5",
        }
    )
    tmp_path.chmod(0o700)
    receiver_port = free_port()  # nothing listens there until after the restart
    token = _token("survivor")
    stack = ExitStack()
    first = stack.enter_context(rlm_serve(env, free_port()))
    try:
        with RLMClient(api_key=token, base_url=first.base, max_retries=0) as client:
            hook = client.webhooks.create(
                f"http://127.0.0.1:{receiver_port}/hook", ["task.completed"]
            )
            tasks = sorted(client.execute(SUM).task_id for _ in range(3))

            def failed_pending() -> list[Delivery]:
                found = client.webhooks.deliveries(hook.webhook_id)
                ok = len(found) == 3 and all(
                    d.status == "pending" and d.attempts >= 1 and d.last_error for d in found
                )
                return found if ok else []

            before = wait_until(failed_pending, 60, "3 pending deliveries, each failed once")
        assert all((d.last_error or "").startswith("cannot connect") for d in before)
        ids = {d.delivery_id: d.event_id for d in before}
        kill_tree(first.process)
        stack.pop_all()  # killed: nothing left to stop
    finally:
        stack.close()
    with WebhookReceiver(port=receiver_port) as receiver, rlm_serve(env, free_port()) as again:
        hits = receiver.wait_for(lambda h: True, count=3, timeout=90)
        with RLMClient(api_key=token, base_url=again.base, max_retries=0) as client:

            def all_succeeded() -> list[Delivery]:
                found = client.webhooks.deliveries(hook.webhook_id)
                return found if {d.status for d in found} == {"succeeded"} else []

            after = wait_until(all_succeeded, 30, "the 3 deliveries are recorded as succeeded")
            # Nothing more arrives: each event came once, although its delivery was attempted
            # by two services.
            assert len(receiver.received) == 3
    events = [verify(h.body, h.headers, hook.secret) for h in hits]
    assert sorted(e["data"]["taskId"] for e in events) == tasks
    assert {e["data"]["status"] for e in events} == {"completed"}
    assert sorted(h.webhook_id or "" for h in hits) == sorted(ids.values())
    assert {d.delivery_id: d.event_id for d in after} == ids
    # The attempts the killed service made are kept, before the one that succeeded.
    for delivery in after:
        codes = [a.status_code for a in delivery.attempt_log]
        assert codes[-1] == 200 and None in codes[:-1]
