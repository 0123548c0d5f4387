"""Running an OOLONG-synth evaluation: ``run_oolong(hv, ...) -> EvalReport``.

Example:
    >>> import rlm
    >>> from rlm.eval import run_oolong
    >>> hv = rlm.connect()                                              # doctest: +SKIP
    >>> report = run_oolong(hv, modes=("direct", "map-reduce"), questions=16)  # doctest: +SKIP
    >>> report.summary("direct").accuracy                               # doctest: +SKIP
    0.8125
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlm.errors import InvalidInput
from rlm.eval.data import Instance, default_data_path, labels_of, load_instances
from rlm.eval.modes import MODES, EvalEngine, ModeConfig, check_rlm_config, run_mode
from rlm.eval.questions import KINDS, Question, make_questions
from rlm.eval.report import EvalReport, QuestionResult
from rlm.eval.score import score_reply
from rlm.eval.windows import Window, build_window

__all__ = [
    "EvalPlan",
    "Progress",
    "build_questions",
    "check_config",
    "check_modes",
    "plan_oolong",
    "run_oolong",
    "run_plan",
]

#: ``progress(done, total, result)`` after each answered (mode, question).
Progress = Callable[[int, int, QuestionResult], None]


def check_modes(modes: Sequence[str]) -> tuple[str, ...]:
    """The modes, checked: known, at least one, none twice.

    Raises:
        InvalidInput: naming the bad mode.
    """
    out = tuple(modes)
    if not out:
        raise InvalidInput("name at least one mode", field="modes")
    for mode in out:
        if mode not in MODES:
            raise InvalidInput(f"unknown mode {mode!r}; known: {', '.join(MODES)}", field="modes")
    if len(set(out)) != len(out):
        raise InvalidInput("a mode is named twice", field="modes")
    return out


def check_config(modes: Sequence[str], config: ModeConfig) -> None:
    """Refuse settings a chosen mode cannot take, before any task runs.

    Raises:
        InvalidInput: ``rlm`` with a provider (RLM tasks use the default provider).
    """
    if "rlm" in modes:
        check_rlm_config(config)


def build_questions(
    instances: Sequence[Instance],
    *,
    questions: int,
    window_tokens: int,
    seed: int | str = 0,
    per_window: int = len(KINDS),
    kinds: Sequence[str] = KINDS,
) -> tuple[list[Window], list[Question]]:
    """The windows and questions of a run (pure and deterministic).

    Question ``i`` is of kind ``kinds[i % len(kinds)]`` and asks about window
    ``i // per_window``.

    Args:
        instances: The labelled instances.
        questions: How many questions.
        window_tokens: Each window's target length in tokens.
        seed: The run's seed.
        per_window: Questions asked about each window.
        kinds: The question kinds to cycle through.

    Returns:
        ``(windows, questions)``.

    Raises:
        InvalidInput: a count below 1, an unknown kind, or a window length too short.
    """
    if questions < 1:
        raise InvalidInput(f"ask at least one question; got {questions}", field="questions")
    if per_window < 1:
        raise InvalidInput(
            f"ask at least one question per window; got {per_window}", field="perWindow"
        )
    if not kinds:
        raise InvalidInput("name at least one question kind", field="kinds")
    labels = labels_of(instances)
    windows: list[Window] = []
    out: list[Question] = []
    for index in range(math.ceil(questions / per_window)):
        first = index * per_window
        wanted = [kinds[i % len(kinds)] for i in range(first, min(first + per_window, questions))]
        window = build_window(instances, window_tokens, seed, index)
        windows.append(window)
        out.extend(make_questions(window, labels, wanted, seed))
    return windows, out


@dataclass(frozen=True)
class EvalPlan:
    """What a run asks, before any engine is involved.

    Attributes:
        source: Where the instances came from (a path, or ``"instances"``).
        windows: The windows.
        questions: The questions, in order.
        settings: How they were drawn (JSON-ready: questions, windowTokens, perWindow,
            seed, kinds).
    """

    source: str
    windows: tuple[Window, ...]
    questions: tuple[Question, ...]
    settings: dict[str, Any]


def plan_oolong(
    data: Path | str | Sequence[Instance] | None = None,
    *,
    questions: int = 24,
    window_tokens: int = 8192,
    seed: int | str = 0,
    per_window: int = len(KINDS),
    kinds: Sequence[str] = KINDS,
) -> EvalPlan:
    """Load the data and draw the windows and questions (pure; fails before any engine runs).

    Args:
        data: The data file, or instances; default :func:`~rlm.eval.data.default_data_path`.
        questions: How many questions.
        window_tokens: Each window's target length in tokens.
        seed: The seed of the windows and questions.
        per_window: Questions asked about each window.
        kinds: Question kinds to cycle through.

    Returns:
        The plan.

    Raises:
        InvalidInput: missing or malformed data, or bad arguments.
    """
    if data is None or isinstance(data, str | Path):
        source = str(data if data is not None else default_data_path())
        instances = load_instances(source)
    else:
        source, instances = "instances", list(data)
    windows, asked = build_questions(
        instances,
        questions=questions,
        window_tokens=window_tokens,
        seed=seed,
        per_window=per_window,
        kinds=kinds,
    )
    settings = {
        "questions": len(asked),
        "windowTokens": window_tokens,
        "perWindow": per_window,
        "seed": seed,
        "kinds": list(kinds),
    }
    return EvalPlan(source, tuple(windows), tuple(asked), settings)


def run_plan(
    hv: EvalEngine,
    plan: EvalPlan,
    *,
    modes: Sequence[str] = MODES,
    config: ModeConfig | None = None,
    progress: Progress | None = None,
) -> EvalReport:
    """Ask a plan's questions in each mode through the engine, and score the answers.

    Questions run one after another; for each question every mode runs in turn, so a
    request the engine refuses is reported at the first question.

    Args:
        hv: The engine (:func:`rlm.connect`'s :class:`~rlm.Hypervisor`).
        plan: From :func:`plan_oolong`.
        modes: Modes to run (from :data:`~rlm.eval.modes.MODES`).
        config: The requests' settings (model, timeout, memo...).
        progress: Called after each answered (mode, question).

    Returns:
        The report.

    Raises:
        InvalidInput: a bad mode, settings a mode cannot take, or a request the engine
            refused.
    """
    chosen = check_modes(modes)
    config = config or ModeConfig()
    check_config(chosen, config)
    by_index = {w.index: w for w in plan.windows}
    results: list[QuestionResult] = []
    total = len(plan.questions) * len(chosen)
    for question in plan.questions:
        window = by_index[question.window]
        for mode in chosen:
            run = run_mode(mode, hv, window, question, config)
            result = QuestionResult(mode, question, run, score_reply(run.reply, question.gold))
            results.append(result)
            if progress is not None:
                progress(len(results), total, result)
    run_config = {"data": plan.source, "modes": list(chosen), **plan.settings}
    run_config["model"] = config.model
    if "rlm" in chosen:
        run_config["rlm"] = {
            "subModel": config.sub_model,
            "maxIterations": config.max_iterations,
            "maxDepth": config.max_depth,
        }
    return EvalReport(run_config, plan.windows, plan.questions, chosen, tuple(results))


def run_oolong(
    hv: EvalEngine,
    *,
    data: Path | str | Sequence[Instance] | None = None,
    modes: Sequence[str] = MODES,
    questions: int = 24,
    window_tokens: int = 8192,
    seed: int | str = 0,
    per_window: int = len(KINDS),
    kinds: Sequence[str] = KINDS,
    config: ModeConfig | None = None,
    progress: Progress | None = None,
) -> EvalReport:
    """Draw OOLONG-synth questions, ask them in each mode through the engine, and score them.

    :func:`plan_oolong` then :func:`run_plan`; see them for the arguments.

    Returns:
        The report.

    Raises:
        InvalidInput: bad arguments or data, or a request the engine refused.
    """
    check_modes(modes)
    plan = plan_oolong(
        data,
        questions=questions,
        window_tokens=window_tokens,
        seed=seed,
        per_window=per_window,
        kinds=kinds,
    )
    return run_plan(hv, plan, modes=modes, config=config, progress=progress)
