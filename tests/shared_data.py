"""Data the tests share with the rest of the project, found beside the checkout as ``../shared``.

``shared/`` always sits next to the repository (``/work/main``, a worktree, or a fresh clone in
CI), read-only. Missing data fails the test that needs it: a skip would let CI pass without ever
running it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

__all__ = ["REPO_ROOT", "SHARED_DIR", "shared_file", "trec_rows"]

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DIR = REPO_ROOT.parent / "shared"


def shared_file(relative: str) -> Path:
    """The path of ``relative`` under ``../shared``; fails the calling test when it is missing.

    Args:
        relative: a path inside ``shared/``, e.g. ``"data/oolong/trec_coarse_validated.jsonl"``.

    Returns:
        The file's absolute path.
    """
    path = SHARED_DIR / relative
    if not path.is_file():
        pytest.fail(
            f"shared test data {relative!r} is missing: expected {path} "
            f"(the shared/ directory beside the checkout at {REPO_ROOT})",
            pytrace=False,
        )
    return path


def trec_rows() -> list[dict[str, object]]:
    """OOLONG's validated TREC questions: ``{"input", "label", ...}`` per line."""
    import json

    path = shared_file("data/oolong/trec_coarse_validated.jsonl")
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
