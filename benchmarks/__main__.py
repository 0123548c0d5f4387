"""Run every benchmark suite: ``python -m benchmarks [--quick] [suite ...]``.

Each figure is printed as a JSON line as it is measured; at the end the run is written to
``benchmarks/results.json`` (``--out``), and with ``--compare OLD.json`` each figure's change
against that earlier run is printed (exit status 1 when one got worse by more than the noise
or passed its limit).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmarks import _results
from benchmarks._report import RECORDED, machine

SUITES = [
    "engine",
    "api",
    "storage_reads",
    "quotas",
    "storage_tasks",
    "lm",
    "security",
    "source_scan",
    "webhooks",
    "resilience",
    "rlm",
    "sdk_import",
    "console",
    "ts_sdk",
    "state_store",
]
RESULTS = Path(__file__).with_name("results.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("suites", nargs="*", help=f"some of {SUITES} (default: all)")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the run")
    parser.add_argument("--compare", type=Path, help="an earlier results.json to compare with")
    parser.add_argument(
        "--compare-only",
        type=Path,
        metavar="NEW.json",
        help="measure nothing: compare NEW.json with --compare OLD.json",
    )
    args = parser.parse_args(argv)
    if args.compare_only is not None:
        if args.compare is None:
            parser.error("--compare-only needs --compare OLD.json")
        return _print_comparison(_results.load(args.compare), _results.load(args.compare_only))
    print(json.dumps({"machine": machine()}), flush=True)
    for suite in args.suites or SUITES:
        module = __import__(f"benchmarks.{suite}", fromlist=["run"])
        module.run(quick=args.quick)
    _results.write(args.out, RECORDED, machine(), sys.argv[1:] if argv is None else argv)
    print(f"wrote {args.out}", file=sys.stderr)
    if args.compare is None:
        return 0
    return _print_comparison(_results.load(args.compare), _results.load(args.out))


def _print_comparison(old: dict[str, object], new: dict[str, object]) -> int:
    changes = _results.compare(old, new)
    print(_results.format_changes(changes))
    return 1 if any(c.regressed for c in changes) else 0


if __name__ == "__main__":
    sys.exit(main())
