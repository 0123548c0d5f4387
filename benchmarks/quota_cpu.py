"""CPU per persisted admission through the accountant, core and caller (issue 18).

Runs 10,000 admissions (reserve, then reconcile, in batches of 100 through the engine's core
actor, as ``benchmarks/quotas.py`` does) five times after a warm-up and prints, per run and as
medians, the admissions per second, the core actor's CPU per admission (``/proc/<pid>/stat``
of its process: user + system) and the caller's (``time.process_time``). On a machine shared
with other work the rate follows the load; the CPU per admission much less so.

Run it from the checkout's root (Ray's workers import the driver's working directory, so
a ``PYTHONPATH`` pointing elsewhere does not switch the code the core runs)::

    .venv/bin/python -m benchmarks.quota_cpu
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import ray

import rlm
from benchmarks._cpu import cpu_seconds
from benchmarks._session import bench_session
from benchmarks.quotas import batched_admissions, setup_tenants
from rlm.config import EngineSettings, Settings

__all__ = ["main"]

N = 10_000
BATCH = 100


def main() -> None:
    """Print one line per run and a JSON line of medians with the 1-minute load."""
    with bench_session("rlm-bench-quota-cpu-") as state:
        hv = rlm.connect(settings=Settings(state_dir=state, engine=EngineSettings(agents=1)))
        core = hv._core
        try:
            setup_tenants(hv)
            pid = ray.get(core.__ray_call__.remote(lambda _self: os.getpid()))

            def run() -> tuple[float, float, float]:
                c0, d0, t0 = cpu_seconds(pid), time.process_time(), time.perf_counter()
                batched_admissions(core, N, BATCH)
                elapsed = time.perf_counter() - t0
                c1, d1 = cpu_seconds(pid), time.process_time()
                return N / elapsed, (c1 - c0) / N * 1e6, (d1 - d0) / N * 1e6

            run()
            rows = [run() for _ in range(5)]
            for rate, core_us, caller_us in rows:
                print(
                    f"{rate:8.0f} admissions/s  core {core_us:5.1f} us  caller {caller_us:5.1f} us"
                )
            medians = [sorted(r[i] for r in rows)[len(rows) // 2] for i in range(3)]
            assert hv.quotas("user_status", "bench").current_concurrent_agents == 0
            print(
                json.dumps(
                    {
                        "admissions_per_s": round(medians[0]),
                        "core_us": round(medians[1], 1),
                        "caller_us": round(medians[2], 1),
                        "load1": float(Path("/proc/loadavg").read_text().split()[0]),
                    }
                )
            )
        finally:
            hv.shutdown_engine()


if __name__ == "__main__":
    main()
