"""A user's finish that fails: the task fails with a generic message, never the exception's."""

from __future__ import annotations

import pytest

import rlm
from tests.integration.ops import LeakyFinish

pytestmark = pytest.mark.integration


def test_finish_error_text_never_reaches_the_caller(hv: rlm.Hypervisor) -> None:
    result = hv.execute(
        {
            "type": "parallel",
            "description": "a finish that fails",
            "input": {"items": list(range(100)), "operation": "leaky_finish"},
            "options": {"leafSize": 10},
        }
    )
    assert result.status == "failed" and result.error is not None
    assert result.error.code == "INTERNAL_ERROR"
    shown = result.model_dump_json()
    assert LeakyFinish.SECRET not in shown and "ValueError" not in shown
    assert "leaky_finish" in result.error.message
    assert result.error.details["incident"] in result.error.message
