"""Background priority for a whole process (the webhook worker's): every thread niced and in
``SCHED_IDLE``, back to the normal class while starved. Run in a child process, so the test
process keeps its own priority."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.shared_data import REPO_ROOT

_CHILD = textwrap.dedent(
    """
    import asyncio, json, os, threading, time
    from rlm.runtime.background import StarvationWatch, run_in_background

    stop = threading.Event()
    early = threading.Thread(target=stop.wait)  # started before: must be changed too
    early.start()

    def classes():
        tids = [int(t) for t in os.listdir("/proc/self/task")]
        return sorted(
            {(os.sched_getscheduler(t), os.getpriority(os.PRIO_PROCESS, t)) for t in tids}
        )

    out = {"threads": len(os.listdir("/proc/self/task")), "changed": run_in_background(7, True)}
    out["after"] = classes()
    later = threading.Thread(target=stop.wait)  # started after: inherits
    later.start()
    out["withLater"] = classes()

    async def main():
        watch = StarvationWatch(7, tick_s=0.05, late_s=0.3, calm_s=0.5)
        task = asyncio.get_running_loop().create_task(watch.run())
        await asyncio.sleep(0.2)
        out["calm"] = [watch.promotions, classes()]
        time.sleep(0.8)  # the loop gets no time: what a saturated machine does to it
        await asyncio.sleep(0.2)
        out["starved"] = [watch.promotions, classes()]
        await asyncio.sleep(1.5)
        out["calmAgain"] = [watch.promotions, classes()]
        task.cancel()

    asyncio.run(main())
    stop.set()
    print(json.dumps(out))
    """
)


def test_every_thread_goes_idle_and_nice_and_back_to_normal_while_starved() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    idle, normal = 5, 0  # os.SCHED_IDLE, os.SCHED_OTHER
    assert out["changed"] == out["threads"] >= 2
    assert out["after"] == [[idle, 7]]
    assert out["withLater"] == [[idle, 7]]
    assert out["calm"] == [0, [[idle, 7]]]
    # Starved: back to the normal class, still nice.
    assert out["starved"] == [1, [[normal, 7]]]
    # Calm for calm_s: idle again.
    assert out["calmAgain"] == [1, [[idle, 7]]]
