"""Where the storage-backed sum's time goes (issue 18): the 1e8 int64 sum with CPU per process.

Samples ``hv.execute`` of the storage-backed recursive sum and ``numpy.sum`` over a new memory
map alternately (as :mod:`benchmarks.storage_tasks`, without the Serve figures), then the CPU
one sum costs the core, each agent (``/proc/<pid>/stat``) and the driver, and numpy's CPU in
this process. With a path argument, also records py-spy (raw format) of the first agent::

    PYTHONPATH=/work/main .venv/bin/python -m benchmarks.storage_sum_cpu [/tmp/agent.txt]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np

import rlm
from benchmarks._cpu import cpu_ms_per_call
from benchmarks._report import paired_medians
from benchmarks._session import bench_session
from benchmarks.storage_tasks import _warm, _write_int64
from rlm.config import EngineSettings, Settings

_N = 100_000_000


def main() -> None:
    """Print the figures as one JSON object."""
    load = [os.getloadavg()[0]]
    with bench_session("rlm-bench-sum-") as state:
        hv = rlm.connect(settings=Settings(state_dir=state, engine=EngineSettings(agents=2)))
        try:
            info = hv.engine_info()
            pids = {"core": info["corePid"]}
            pids.update({f"agent{i}": pid for i, pid in enumerate(info["pids"])})
            path = hv.settings.state_dir / "data" / "big.i64"
            _write_int64(path, _N)
            _warm(path)
            request = {
                "type": "recursive",
                "description": "sum of 1e8 int64 from storage",
                "input": {
                    "source": {"connector": "local", "key": "big.i64", "format": "int64"},
                    "operation": "sum",
                },
            }

            def numpy_sum() -> int:
                return int(np.memmap(path, dtype=np.int64, mode="r").sum())

            out = hv.execute(request)
            assert out.output == numpy_sum(), (out.output, numpy_sum())
            ours, base = paired_medians(lambda: hv.execute(request), numpy_sum, repeat=9)
            cpu = cpu_ms_per_call(lambda: hv.execute(request), pids, 5)
            t0 = time.process_time()
            for _ in range(5):
                numpy_sum()
            result = {
                "oursMs": round(ours * 1e3, 2),
                "numpyMs": round(base * 1e3, 2),
                "ratio": round(ours / base, 3),
                "agentCalls": out.agent_calls,
                "cpuMs": cpu,
                "numpyCpuMs": round((time.process_time() - t0) * 1000 / 5, 1),
            }
            if len(sys.argv) > 1:
                pyspy = os.path.join(os.path.dirname(sys.executable), "py-spy")
                agent = str(pids["agent0"])
                args = [pyspy, "record", "-p", agent, "-r", "250", "-f", "raw", "-o", sys.argv[1]]
                spy = subprocess.Popen(
                    [*args, "--nonblocking", "-d", "8"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                time.sleep(0.5)
                t0 = time.monotonic()
                while time.monotonic() - t0 < 7:
                    hv.execute(request)
                spy.wait()
            path.unlink()
        finally:
            hv.shutdown_engine()
    load.append(os.getloadavg()[0])
    print(json.dumps({**result, "load": load, "rlm": os.path.dirname(rlm.__file__)}))


if __name__ == "__main__":
    main()
