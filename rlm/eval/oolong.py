"""``rlm eval oolong``: the OOLONG-synth evaluation from the command line or as a Ray job.

``python -m rlm.eval.oolong ARGS`` is ``rlm eval oolong ARGS``, so the evaluation runs as a
Ray job as it is::

    ray job submit -- python -m rlm.eval.oolong --modes direct,map-reduce --questions 48

The table goes to stdout; ``--json PATH`` writes the whole report (``-``: to stdout instead of
the table); ``--record`` also records it in the API (:mod:`rlm.eval.record`). Data, modes and
arguments are checked before the engine is joined, so a bad run is refused at once (exit 2,
the error envelope last on stderr).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import orjson

from rlm.eval.data import DATA_ENV, DEFAULT_DATA
from rlm.eval.modes import MODES, EvalEngine, ModeConfig
from rlm.eval.questions import KINDS
from rlm.eval.report import EvalReport, QuestionResult
from rlm.eval.run import check_config, check_modes, plan_oolong, run_plan

__all__ = ["add_arguments", "main", "run_command", "write_report"]


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``rlm eval oolong``'s options to ``parser``."""
    parser.add_argument(
        "--modes",
        default=",".join(MODES),
        help=f"comma-separated modes to run (default {','.join(MODES)})",
    )
    parser.add_argument("--questions", type=int, default=24, help="questions (default 24)")
    parser.add_argument(
        "--window-tokens",
        type=int,
        default=8192,
        help="each window's length in tokens, ceil(characters / 4) (default 8192)",
    )
    parser.add_argument(
        "--per-window",
        type=int,
        default=len(KINDS),
        help=f"questions per window (default {len(KINDS)}: one of each kind)",
    )
    parser.add_argument(
        "--kinds", default=",".join(KINDS), help="comma-separated question kinds (default all)"
    )
    parser.add_argument("--seed", default="0", help="seed of the windows and questions")
    parser.add_argument(
        "--model", default=None, help="the model (rlm: the root's; default: the provider's)"
    )
    parser.add_argument(
        "--provider",
        default=None,
        help="the LM provider of direct and map-reduce (default: default; rlm takes none)",
    )
    parser.add_argument(
        "--sub-model",
        default=None,
        help="rlm: the sub-calls' model (default: the provider's subModel, else --model)",
    )
    parser.add_argument(
        "--max-iterations", type=int, default=None, help="rlm: root turns (default 30)"
    )
    parser.add_argument(
        "--max-depth", type=int, default=None, help="rlm: rlm_query nesting (default 1)"
    )
    parser.add_argument(
        "--timeout-s", type=float, default=600.0, help="each task's timeout (default 600)"
    )
    parser.add_argument(
        "--max-tokens", type=int, default=None, help="completion tokens of a direct call"
    )
    parser.add_argument(
        "--memo", action="store_true", help="let identical calls be answered from the memo cache"
    )
    parser.add_argument(
        "--json", default=None, metavar="PATH", help="write the report as JSON ('-': stdout)"
    )
    parser.add_argument(
        "--data",
        default=None,
        metavar="PATH",
        help=f"OOLONG instances, JSON lines (default ${DATA_ENV}, else {DEFAULT_DATA} beside "
        "the repository)",
    )
    parser.add_argument(
        "--record",
        action="store_true",
        help="record the report in the API (POST /v1/evaluations) as the user of RLM_API_KEY "
        "at RLM_BASE_URL, for the console's Evaluations view",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def _seed(text: str) -> int | str:
    try:
        return int(text)
    except ValueError:
        return text


def write_report(report: EvalReport, json_path: str | None) -> None:
    """Print the table (unless the JSON goes to stdout) and write the JSON where asked."""
    data = orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2) + b"\n"
    if json_path == "-":
        sys.stdout.write(data.decode())
        return
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        console = Console(width=140)  # logs and pipes: Rich would cut the table at 80 columns
    console.print(report.table())
    if json_path is not None:
        Path(json_path).write_bytes(data)


def run_command(args: argparse.Namespace, connect: Callable[[], EvalEngine]) -> int:
    """Run ``rlm eval oolong`` with parsed ``args``; ``connect()`` joins the engine.

    Raises:
        InvalidInput: bad arguments or data (before ``connect`` is called), a mode the engine
            cannot run, or a request it refused.
    """
    from rlm.errors import InvalidInput

    modes = check_modes(_names(args.modes))
    if args.timeout_s <= 0:
        raise InvalidInput("--timeout-s must be positive", field="timeoutS")
    config = ModeConfig(
        model=args.model,
        provider=args.provider,
        timeout_ms=round(args.timeout_s * 1000),
        memo=args.memo,
        max_tokens=args.max_tokens,
        sub_model=args.sub_model,
        max_iterations=args.max_iterations,
        max_depth=args.max_depth,
    )
    check_config(modes, config)
    plan = plan_oolong(
        args.data,
        questions=args.questions,
        window_tokens=args.window_tokens,
        seed=_seed(args.seed),
        per_window=args.per_window,
        kinds=_names(args.kinds),
    )
    engine = connect()
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    console = Console(stderr=True)
    if args.quiet or not console.is_terminal:
        report = run_plan(engine, plan, modes=modes, config=config)
    else:
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as bar:
            handle = bar.add_task("OOLONG", total=len(plan.questions) * len(modes))

            def advance(done: int, total: int, result: QuestionResult) -> None:
                bar.update(
                    handle, completed=done, description=f"{result.mode} {result.question.id}"
                )

            report = run_plan(engine, plan, modes=modes, config=config, progress=advance)
    write_report(report, args.json)
    if args.record:
        from rlm.eval.record import record_report

        run = record_report(report.to_json())
        Console(stderr=True).print(f"recorded as evaluation run {run['runId']}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m rlm.eval.oolong ARGS``: the same as ``rlm eval oolong ARGS``."""
    from rlm.cli import main as rlm_main

    return rlm_main(["eval", "oolong", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
