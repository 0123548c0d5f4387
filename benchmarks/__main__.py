"""Run every benchmark suite: ``python -m benchmarks [--quick] [suite ...]``."""

from __future__ import annotations

import argparse
import json

from benchmarks._report import machine

SUITES = [
    "engine",
    "api",
    "storage_reads",
    "quotas",
    "storage_tasks",
    "lm",
    "security",
    "webhooks",
    "resilience",
    "rlm",
    "sdk_import",
]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("suites", nargs="*", help=f"some of {SUITES} (default: all)")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    print(json.dumps({"machine": machine()}), flush=True)
    for suite in args.suites or SUITES:
        module = __import__(f"benchmarks.{suite}", fromlist=["run"])
        module.run(quick=args.quick)


if __name__ == "__main__":
    main()
