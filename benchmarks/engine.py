"""Engine benchmarks (issues 2 and 18), each against a baseline measured in the same run.

- recursive sum of 2M float64 vs a hand-written Ray tree reduce of the same shape;
- a small task's p50 through ``Hypervisor.execute`` vs one raw Ray task round trip;
  (these two sample both sides alternately: the machine's load moves within seconds)
- agent calls per second vs raw Ray tasks per second (submitted at once, then gathered);
- the log-log slope of recursive-sum time from 1e5 to 1e7 items.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import ray

import rlm
from benchmarks._report import figure, median_time, paired_medians
from benchmarks._session import bench_session
from rlm.config import EngineSettings, Settings

__all__ = ["run"]


@ray.remote
def _leaf(arr: np.ndarray[Any, Any], start: int, end: int) -> float:
    return float(arr[start:end].sum())


@ray.remote
def _combine(*parts: float) -> float:
    return sum(parts)


@ray.remote
def _tiny(items: list[int]) -> int:
    return sum(items)


def _tree_reduce(arr: np.ndarray[Any, Any], leaf_size: int, fanout: int) -> float:
    """The hand-written baseline: put once, leaves over index ranges, combines of refs."""
    ref = ray.put(arr)

    def build(start: int, end: int) -> Any:
        n = end - start
        if n <= leaf_size:
            return _leaf.remote(ref, start, end)
        k = min(fanout, -(-n // leaf_size))
        bounds = [start + n * i // k for i in range(k + 1)]
        return _combine.remote(*(build(bounds[i], bounds[i + 1]) for i in range(k)))

    return float(ray.get(build(0, len(arr))))


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Run the engine figures; ``quick`` shrinks repetitions (for a smoke run)."""
    with bench_session("rlm-bench-") as state:
        return _figures(state, quick)


def _figures(state: Path, quick: bool) -> list[dict[str, Any]]:
    rows = []
    hv = rlm.connect(settings=Settings(state_dir=state, engine=EngineSettings(agents=2)))
    reps = 3 if quick else 9
    try:
        rng = np.random.default_rng(0)

        # 1. recursive sum of 2M float64, same tree shape.
        arr = rng.random(2_000_000)
        leaf_size, fanout = 125_000, 4
        request = {
            "type": "recursive",
            "description": "2M float64",
            "input": {"items": arr, "operation": "sum"},
            "options": {"leafSize": leaf_size, "fanout": fanout},
        }
        out = hv.execute(request)
        assert abs(out.output - _tree_reduce(arr, leaf_size, fanout)) < 1e-6 * len(arr)
        ours, base = paired_medians(
            lambda: hv.execute(request),
            lambda: _tree_reduce(arr, leaf_size, fanout),
            repeat=3 * reps,
        )
        rows.append(
            figure(
                "recursive sum of 2M float64 vs hand-written Ray tree reduce",
                ours,
                base,
                unit="s",
                ratio=ours / base,
                goal="<= 0.7x",
                limit="1.2x",
                baseline_name="ray tasks tree reduce, same shape",
                agentCalls=out.agent_calls,
            )
        )

        # 2. small task p50.
        small = {
            "type": "recursive",
            "description": "10-item sum",
            "input": {"items": list(range(1, 11)), "operation": "sum"},
        }
        items = list(range(1, 11))
        n = 60 if quick else 300

        ours, base = paired_medians(
            lambda: hv.execute(small), lambda: ray.get(_tiny.remote(items)), repeat=n, warmup=20
        )
        rows.append(
            figure(
                "small task (10-item sum) p50 via Hypervisor.execute vs raw Ray task round trip",
                ours * 1000,
                base * 1000,
                unit="ms",
                ratio=ours / base,
                goal="<= 1.3x",
                limit="2x",
                baseline_name="ray.get(task.remote()) round trip",
            )
        )

        # 3. agent calls per second.
        calls = 1000 if quick else 4000
        many = {
            "type": "parallel",
            "description": "many tiny calls",
            "input": {"items": list(range(calls - 1)), "operation": "sum"},
            "options": {"leafSize": 1},
        }
        rate_ours = statistics.median(
            (lambda r: r.agent_calls / (r.execution_time_ms / 1000))(hv.execute(many))
            for _ in range(3)
        )

        def raw_rate() -> float:
            t0 = time.perf_counter()
            ray.get([_tiny.remote([i]) for i in range(calls)])
            return calls / (time.perf_counter() - t0)

        raw_rate()
        rate_base = statistics.median(raw_rate() for _ in range(3))
        rows.append(
            figure(
                "agent calls per second vs raw Ray tasks per second",
                rate_ours,
                rate_base,
                unit="calls/s",
                ratio=rate_ours / rate_base,
                goal=">= 5x",
                limit=">= 2x",
                baseline_name="ray tasks submitted at once, then gathered",
            )
        )

        # 4. scaling slope from 1e5 to 1e7 items.
        sizes = [100_000, 300_000, 1_000_000, 3_000_000, 10_000_000]
        times = []
        for size in sizes:
            data = rng.random(size)
            req = {
                "type": "recursive",
                "description": f"{size}",
                "input": {"items": data, "operation": "sum"},
            }
            times.append(median_time(lambda req=req: hv.execute(req), repeat=3 if quick else 5))
        slope = float(np.polyfit(np.log(sizes), np.log(times), 1)[0])
        rows.append(
            figure(
                "recursive sum time from 1e5 to 1e7 items, log-log slope",
                slope,
                1.0,
                unit="slope",
                ratio=slope,
                goal="<= 1.05",
                limit="1.2",
                baseline_name="linear scaling (slope 1)",
                seconds=dict(zip(map(str, sizes), [round(t, 5) for t in times], strict=True)),
            )
        )
    finally:
        hv.shutdown_engine()
    return rows


if __name__ == "__main__":
    run()
