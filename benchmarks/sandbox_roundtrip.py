"""Sandbox cell round trip (``x = 1``) on the public API; one JSON line (issue #10's figure).

Run from the repository root as root: ``python -m benchmarks.sandbox_roundtrip``.
"""

from __future__ import annotations

import json
import statistics
import time

from rlm.sandbox import Sandbox


def main(cells: int = 2000) -> None:
    with Sandbox(lambda kind, prompts, model: prompts) as box:
        box.run("x = 1")  # warm
        times = []
        for _ in range(cells):
            started = time.perf_counter()
            box.run("x = 1")
            times.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        with Sandbox(lambda kind, prompts, model: prompts):
            start_ms = (time.perf_counter() - started) * 1000
    times.sort()
    print(
        json.dumps(
            {
                "figure": "sandbox_cell_round_trip_ms",
                "p50": round(statistics.median(times), 3),
                "p95": round(times[int(len(times) * 0.95)], 3),
                "goal_p50": 5,
                "limit_p50": 20,
                "cells": cells,
                "sandbox_start_ms": round(start_ms, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
