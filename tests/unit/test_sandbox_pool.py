"""Pre-started sandboxes (no Ray): taken without a process start, refilled, closed."""

from __future__ import annotations

import pytest

from rlm.sandbox import Sandbox, SandboxUnavailable, host
from rlm.sandbox.pool import SandboxPool, refuse_calls
from tests.support import wait_until


def test_a_take_gets_a_started_sandbox_and_the_pool_refills() -> None:
    pool = SandboxPool(lambda: Sandbox(refuse_calls), prestart=2)
    try:
        pool.warm()
        wait_until(lambda: len(pool.idle_pids()) == 2, 30, "two sandboxes started")
        idle = set(pool.idle_pids())
        box = pool.take(lambda kind, prompts, model: [p[::-1] for p in prompts])
        assert box.pid in idle  # no process was started for this take
        assert box.run("print(llm_query('abc'))").stdout == "cba\n"  # its session's callback
        wait_until(lambda: len(pool.idle_pids()) == 2, 30, "the pool refilled")
        assert box.pid not in pool.idle_pids() and pool.started == 3
        box.close()
    finally:
        uids = [b.uid for b in pool._idle]
        pool.close()
    assert pool.idle_pids() == [] and all(uid not in host._uids_in_use() for uid in uids)


def test_an_idle_sandbox_that_died_is_not_handed_out() -> None:
    pool = SandboxPool(lambda: Sandbox(refuse_calls), prestart=1)
    try:
        pool.warm()
        (dead,) = pool.idle_pids()
        pool._idle[0].kill()
        box = pool.take(refuse_calls)
        assert box.alive and box.pid != dead
        box.close()
    finally:
        pool.close()


def test_warm_says_when_the_os_cannot_isolate() -> None:
    def refused() -> Sandbox:
        raise SandboxUnavailable("no user namespaces here")

    pool = SandboxPool(refused, prestart=2)
    with pytest.raises(SandboxUnavailable, match="no user namespaces"):
        pool.warm()
    with pytest.raises(SandboxUnavailable):
        pool.take(refuse_calls)
    pool.close()
