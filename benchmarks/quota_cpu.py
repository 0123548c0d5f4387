"""CPU per persisted admission through the accountant, core and caller (issue 18).

Runs 10,000 admissions (reserve, then reconcile, in batches of 100 through the engine's core
actor, as ``benchmarks/quotas.py`` does) five times after a warm-up and prints, per run and as
medians, the admissions per second, the core actor's CPU per admission (``/proc/<pid>/stat``
of its process: user + system) and the caller's (``time.process_time``). On a machine shared
with other work the rate follows the load; the CPU per admission much less so.

Run it against either checkout to compare them (``rlm`` comes from ``PYTHONPATH``; ``runpy``
keeps ``benchmarks/`` itself off ``sys.path``, where ``benchmarks/rlm.py`` would shadow ``rlm``)::

    PYTHONPATH=/path/to/checkout python -c "import runpy; runpy.run_path(
        'benchmarks/quota_cpu.py', run_name='__main__')"
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import ray

import rlm
from benchmarks._session import bench_session
from rlm.config import EngineSettings, Settings
from rlm.models.quotas import QuotaConfig

try:
    from rlm.quotas.wire import unpack_slot
except ImportError:  # a checkout from before compact slots answers ("ok", dataclass)

    def unpack_slot(slot: tuple[str, Any]) -> Any:  # type: ignore[misc]
        return slot[1]


__all__ = ["main"]

N = 10_000
BATCH = 100


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    """Print one line per run and a JSON line of medians with the 1-minute load."""
    with bench_session("rlm-bench-quota-cpu-") as state:
        hv = rlm.connect(settings=Settings(state_dir=state, engine=EngineSettings(agents=1)))
        core = hv._core
        try:
            hv.quotas("create_org", "corp", "", None, 10**9, 10**6, 0.0)
            hv.quotas("create_org", "eng", "", "corp", 10**9, 10**6, 0.0)
            hv.quotas("create_team", "research", "Research", 10**9, 10**6, 0.0)
            hv.quotas("add_member", "research", "bench")
            big = 10**9
            hv.quotas(
                "set_user_config",
                QuotaConfig(
                    user_id="bench",
                    daily_agent_limit=big,
                    weekly_agent_limit=big,
                    monthly_agent_limit=big,
                    daily_compute_hours=10**6,
                    max_concurrent_agents=big,
                    max_storage_gb=1.0,
                ),
            )
            pid = ray.get(core.__ray_call__.remote(lambda _self: os.getpid()))
            kw = {"tier": "user", "team_id": "research", "org_id": "eng"}

            def run() -> tuple[float, float, float]:
                ids = [uuid.uuid4().hex for _ in range(N)]
                c0, d0, t0 = _cpu_s(pid), time.process_time(), time.perf_counter()
                held = ray.get(
                    [
                        core.quota_batch.remote(
                            [("reserve", ("bench", 5), {**kw, "task_id": i}) for i in chunk]
                        )
                        for chunk in (ids[k : k + BATCH] for k in range(0, N, BATCH))
                    ]
                )
                settled = ray.get(
                    [
                        core.quota_batch.remote(
                            [
                                ("reconcile", (unpack_slot(s).reservation_id, 4, 0.001), {})
                                for s in answer[1]
                            ]
                        )
                        for answer in held
                    ]
                )
                done = [unpack_slot(s) for answer in settled for s in answer[1]]
                elapsed = time.perf_counter() - t0
                c1, d1 = _cpu_s(pid), time.process_time()
                assert all(type(s).__name__ == "Settlement" for s in done)
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
