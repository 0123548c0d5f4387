"""A user's finish failing: the client sees a generic message, the log keeps the detail."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from rlm.errors import InternalError, InvalidInput
from rlm.execution import finish_output
from rlm.operations import FunctionOperation
from rlm.operations.registry import default_registry

SECRET = "AKIA-0123456789 /home/ada/notes.txt"


def _op(finish: Any) -> FunctionOperation:
    def combine(partials: Sequence[Any], params: Any) -> Any:
        return sum(partials)

    return FunctionOperation("leaky", leaf=lambda c, p: 0, combine=combine, finish=finish)


def test_a_crashing_finish_shows_no_exception_text(caplog: pytest.LogCaptureFixture) -> None:
    def finish(partial: Any, params: Any) -> Any:
        raise KeyError(f"cannot read {SECRET}")

    with (
        caplog.at_level(logging.ERROR, logger="rlm.execution"),
        pytest.raises(InternalError) as excinfo,
    ):
        finish_output(_op(finish), 1, None, task_id="task-1")
    err = excinfo.value
    shown = str(err.to_payload())
    assert SECRET not in shown and "KeyError" not in shown
    assert err.details["operation"] == "leaky"
    incident = err.details["incident"]
    assert incident in err.message
    # The operator finds the whole story under the incident id.
    record = next(r for r in caplog.records if incident in r.getMessage())
    assert "task-1" in record.getMessage()
    assert record.exc_info is not None and SECRET in str(record.exc_info[1])
    assert err.__cause__ is None and err.__suppress_context__


def test_an_operations_own_error_is_its_answer() -> None:
    def finish(partial: Any, params: Any) -> Any:
        raise InvalidInput("nothing to average", field="input.items")

    with pytest.raises(InvalidInput, match="nothing to average"):
        finish_output(_op(finish), 1, None)
    mean = default_registry().get("mean")
    params = mean.parse_params({})
    empty = mean.leaf(np.array([], dtype=float), params)
    with pytest.raises(InvalidInput, match="the input is empty"):
        finish_output(mean, empty, params)


def test_a_finished_output_is_json_ready() -> None:
    assert finish_output(_op(lambda p, _: np.int64(p) * 2), 21, None) == 42
