"""The OOLONG instances the evaluation tests share, read once from ``../shared``."""

from __future__ import annotations

from functools import cache

from rlm.eval.data import Instance, label_map, labels_of, load_instances
from tests.shared_data import shared_file

__all__ = ["TREC", "instances", "labels", "gold_labels"]

TREC = "data/oolong/trec_coarse_validated.jsonl"


@cache
def instances() -> tuple[Instance, ...]:
    """The validated TREC-coarse instances (missing data fails the test)."""
    return tuple(load_instances(shared_file(TREC)))


def labels() -> tuple[str, ...]:
    """Their six labels, sorted."""
    return labels_of(instances())


def gold_labels() -> dict[str, str]:
    """``{text: label}`` for the oracles."""
    return label_map(instances())
