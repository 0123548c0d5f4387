"""Evaluations of the engine's modes on long-context benchmarks.

OOLONG-synth: windows of dated, attributed, unlabelled lines (:mod:`~rlm.eval.windows`),
aggregate questions over their labels with gold answers (:mod:`~rlm.eval.questions`), and the
benchmark's scoring (:mod:`~rlm.eval.score`). Pure: no Ray is imported here.
"""

from __future__ import annotations

from rlm.eval.data import Instance, default_data_path, load_instances
from rlm.eval.questions import KINDS, Question, QuestionSpec, parse_question
from rlm.eval.score import score_reply
from rlm.eval.windows import Window, build_window

__all__ = [
    "Instance",
    "KINDS",
    "Question",
    "QuestionSpec",
    "Window",
    "build_window",
    "default_data_path",
    "load_instances",
    "parse_question",
    "score_reply",
]
