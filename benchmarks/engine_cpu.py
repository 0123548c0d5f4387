"""Where the engine's time goes (issue 18): the tree and small-execute figures with the CPU
each task costs per process.

Prints, for the 2M float64 tree and the 10-item execute: the paired medians against their
Ray baselines (as :mod:`benchmarks.engine`), then the CPU time per task of the core, of each
agent (``/proc/<pid>/stat``: user + system) and of the driver (``time.process_time``), over
runs of ours alone. Run against another checkout's ``rlm`` with ``PYTHONPATH``::

    PYTHONPATH=/work/main .venv/bin/python -m benchmarks.engine_cpu
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import ray

import rlm
from benchmarks._cpu import cpu_ms_per_call
from benchmarks._report import paired_medians
from benchmarks._session import bench_session
from benchmarks.engine import _tiny, _tree_reduce
from rlm.config import EngineSettings, Settings


def _pair(ours: float, base: float) -> dict[str, float]:
    return {
        "oursMs": round(ours * 1e3, 3),
        "rayMs": round(base * 1e3, 3),
        "ratio": round(ours / base, 3),
    }


def main() -> None:
    """Print the figures as one JSON object."""
    load = [os.getloadavg()[0]]
    with bench_session("rlm-bench-cpu-") as state:
        hv = rlm.connect(settings=Settings(state_dir=state, engine=EngineSettings(agents=2)))
        try:
            info = hv.engine_info()
            pids = {"core": info["corePid"]}
            pids.update({f"agent{i}": pid for i, pid in enumerate(info["pids"])})
            arr = np.random.default_rng(0).random(2_000_000)
            tree = {
                "type": "recursive",
                "description": "2M float64",
                "input": {"items": arr, "operation": "sum"},
                "options": {"leafSize": 125_000, "fanout": 4},
            }
            small = {
                "type": "recursive",
                "description": "10-item sum",
                "input": {"items": list(range(1, 11)), "operation": "sum"},
            }
            items = list(range(1, 11))
            ours_t, base_t = paired_medians(
                lambda: hv.execute(tree), lambda: _tree_reduce(arr, 125_000, 4), repeat=27
            )
            ours_s, base_s = paired_medians(
                lambda: hv.execute(small),
                lambda: ray.get(_tiny.remote(items)),
                repeat=300,
                warmup=20,
            )
            result: dict[str, Any] = {
                "tree": _pair(ours_t, base_t),
                "small": _pair(ours_s, base_s),
                "treeCpuMs": cpu_ms_per_call(lambda: hv.execute(tree), pids, 40),
                "smallCpuMs": cpu_ms_per_call(lambda: hv.execute(small), pids, 400),
            }
        finally:
            hv.shutdown_engine()
    load.append(os.getloadavg()[0])
    result["load"] = load
    result["rlm"] = os.path.dirname(rlm.__file__)
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
