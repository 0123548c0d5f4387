"""The ``../shared`` lookup of the data-driven tests: beside the checkout, failing when absent."""

from __future__ import annotations

import pytest

from tests.shared_data import REPO_ROOT, SHARED_DIR, shared_file


def test_shared_sits_beside_the_checkout() -> None:
    assert (REPO_ROOT / "pyproject.toml").is_file()
    assert REPO_ROOT.parent / "shared" == SHARED_DIR
    assert shared_file("data/oolong/README.md").parent == SHARED_DIR / "data" / "oolong"


def test_missing_shared_data_fails_rather_than_skips() -> None:
    with pytest.raises(pytest.fail.Exception, match=r"no/such\.jsonl' is missing"):
        shared_file("no/such.jsonl")
