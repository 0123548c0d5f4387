"""One JSON line per figure, with its baseline measured in the same run."""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

__all__ = ["RECORDED", "figure", "machine", "median_time", "paired_medians"]

#: Every figure printed in this process, in order (``python -m benchmarks`` writes them out).
RECORDED: list[dict[str, Any]] = []


def median_time(fn: Callable[[], Any], *, repeat: int, warmup: int = 1) -> float:
    """The median wall time of ``fn`` over ``repeat`` runs, after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def paired_medians(
    ours: Callable[[], Any], base: Callable[[], Any], *, repeat: int, warmup: int = 1
) -> tuple[float, float]:
    """The median wall times of ``ours`` and ``base``, sampled alternately.

    On a shared machine the load moves within seconds: timing all of one side, then all of
    the other, hands each side a different machine. Alternating sample by sample gives both
    the same one.
    """
    for _ in range(warmup):
        ours()
        base()
    a: list[float] = []
    b: list[float] = []
    for _ in range(repeat):
        for fn, samples in ((ours, a), (base, b)):
            t0 = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t0)
    return statistics.median(a), statistics.median(b)


def figure(
    name: str,
    ours: float,
    baseline: float,
    *,
    unit: str,
    ratio: float,
    goal: str,
    limit: str,
    baseline_name: str,
    **extra: Any,
) -> dict[str, Any]:
    """Print (and return) one figure as a JSON line."""
    row = {
        "figure": name,
        "ours": round(ours, 6),
        "baseline": round(baseline, 6),
        "baselineName": baseline_name,
        "unit": unit,
        "ratio": round(ratio, 3),
        "goal": goal,
        "limit": limit,
        **extra,
    }
    print(json.dumps(row), flush=True)
    RECORDED.append(row)
    return row


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import os

    import numpy as np

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "numpy": np.__version__,
    }
