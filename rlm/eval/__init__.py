"""Evaluations of the engine's modes on long-context benchmarks.

OOLONG-synth (:func:`run_oolong`, ``rlm eval oolong``): windows of dated, attributed,
unlabelled lines (:mod:`~rlm.eval.windows`), aggregate questions over their labels with gold
answers (:mod:`~rlm.eval.questions`), the benchmark's scoring (:mod:`~rlm.eval.score`), the
modes that answer them through the engine (:mod:`~rlm.eval.modes`) and the report
(:mod:`~rlm.eval.report`). Everything but the engine itself is pure: no Ray is imported here.
"""

from __future__ import annotations

from rlm.eval.data import Instance, default_data_path, load_instances
from rlm.eval.modes import MODES, EvalEngine, ModeConfig, ModeRun
from rlm.eval.questions import KINDS, Question, QuestionSpec, parse_question
from rlm.eval.report import EvalReport, ModeSummary, QuestionResult
from rlm.eval.run import EvalPlan, plan_oolong, run_oolong, run_plan
from rlm.eval.score import score_reply
from rlm.eval.windows import Window, build_window

__all__ = [
    "EvalEngine",
    "EvalPlan",
    "EvalReport",
    "Instance",
    "KINDS",
    "MODES",
    "ModeConfig",
    "ModeRun",
    "ModeSummary",
    "Question",
    "QuestionResult",
    "QuestionSpec",
    "Window",
    "build_window",
    "default_data_path",
    "load_instances",
    "parse_question",
    "plan_oolong",
    "run_oolong",
    "run_plan",
    "score_reply",
]
