"""Failures of user code and engine internals: the caller sees a generic sentence and an
incident id, the operator's log keeps the exception under that id (#11, item 7 and leaves)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import pytest

from rlm.errors import InvalidInput
from rlm.incidents import log_incident, new_incident
from rlm.operations import FunctionOperation
from rlm.operations.registry import default_registry
from rlm.rlmmode.session import root_failure
from rlm.runtime.agents import _failed

SECRET = "AKIA-0123456789 /srv/private/customer.csv"


def _user_op(error: Exception) -> FunctionOperation:
    def leaf(chunk: Any, params: Any) -> Any:
        raise error

    def combine(partials: Sequence[Any], params: Any) -> Any:
        return sum(partials)

    return FunctionOperation("leaky_leaf", leaf=leaf, combine=combine)


def _logged(caplog: pytest.LogCaptureFixture, incident: str) -> logging.LogRecord:
    return next(r for r in caplog.records if incident in r.getMessage())


@pytest.mark.parametrize(
    ("error", "code", "what"),
    [
        (ValueError(f"cannot parse {SECRET}"), "INVALID_INPUT", "failed on this input"),
        (RuntimeError(f"lost {SECRET}"), "INTERNAL_ERROR", "crashed"),
    ],
)
def test_a_user_operations_leaf_error_shows_no_exception_text(
    caplog: pytest.LogCaptureFixture, error: Exception, code: str, what: str
) -> None:
    with caplog.at_level(logging.ERROR, logger="rlm.runtime.agents"):
        meta = _failed(_user_op(error), error, time.perf_counter(), "task-7")
    assert meta["ok"] is False
    payload = meta["error"]
    shown = str(payload)
    assert SECRET not in shown and type(error).__name__ not in shown
    incident = payload["details"]["incident"]
    assert payload == {
        "code": code,
        "message": f"operation 'leaky_leaf' {what} (incident {incident})",
        "details": {"operation": "leaky_leaf", "incident": incident},
    }
    record = _logged(caplog, incident)
    assert "task-7" in record.getMessage()
    assert record.exc_info is not None and SECRET in str(record.exc_info[1])


def test_a_builtin_operations_input_error_is_shown_and_its_crash_is_not() -> None:
    total = default_registry().get("sum")
    meta = _failed(total, ValueError("could not convert 'x' to a number"), time.perf_counter())
    assert meta["error"]["code"] == "INVALID_INPUT"
    assert meta["error"]["message"].endswith("could not convert 'x' to a number")
    crash = _failed(total, OSError(f"cannot map {SECRET}"), time.perf_counter())["error"]
    assert crash["code"] == "INTERNAL_ERROR" and SECRET not in str(crash)
    assert crash["details"]["incident"] in crash["message"]


def test_an_operations_own_error_and_a_cancel_are_answered_as_they_are() -> None:
    err = InvalidInput("nothing to average", field="input.items")
    meta = _failed(_user_op(err), err, time.perf_counter())
    assert meta["error"] == err.to_payload()


def test_an_rlm_session_failure_shows_only_its_incident(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("rlm.runtime.rlm_host")
    err = KeyError(SECRET)
    with caplog.at_level(logging.ERROR, logger=log.name):
        incident = log_incident(log, "the RLM session failed", err, task_id="task-9")
    failure = root_failure(err, incident)
    assert failure.code == "INTERNAL_ERROR"
    assert SECRET not in str(failure.to_payload()) and "KeyError" not in failure.message
    assert failure.details == {"incident": incident} and incident in failure.message
    assert SECRET in str(_logged(caplog, incident).exc_info)
    deliberate = InvalidInput("context too large")
    assert root_failure(deliberate, "") is deliberate


def test_incident_ids_are_fresh() -> None:
    ids = {new_incident() for _ in range(1000)}
    assert len(ids) == 1000 and all(len(i) == 12 for i in ids)
