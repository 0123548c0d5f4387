"""The error tree: codes, statuses, payloads, pickling."""

from __future__ import annotations

import pickle

import pytest

from rlm import errors
from rlm.errors import (
    ERRORS_BY_CODE,
    InvalidInput,
    RateLimited,
    RLMError,
    TaskNotFound,
    error_from_payload,
)

TABLE = {
    "INVALID_INPUT": 400,
    "CONFLICT": 409,
    "UNAUTHORIZED": 401,
    "FORBIDDEN": 403,
    "TASK_NOT_FOUND": 404,
    "WEBHOOK_NOT_FOUND": 404,  # an extension: the document has no webhook routes
    "EVALUATION_NOT_FOUND": 404,  # an extension: evaluation runs served by the API
    "TIMEOUT": 408,
    "QUOTA_EXCEEDED": 429,
    "RATE_LIMITED": 429,
    "INTERNAL_ERROR": 500,
}


def test_every_code_of_the_document_has_its_status() -> None:
    assert {code: cls.status for code, cls in ERRORS_BY_CODE.items()} == TABLE
    for cls in ERRORS_BY_CODE.values():
        assert issubclass(cls, RLMError)


@pytest.mark.parametrize("cls", list(ERRORS_BY_CODE.values()))
def test_payload_round_trip_keeps_class_and_details(cls: type[RLMError]) -> None:
    err = RLMError._restore.__func__(cls, "boom", {"k": 1})  # type: ignore[attr-defined]
    back = error_from_payload(err.to_payload())
    assert type(back) is cls and back.message == "boom" and back.details == {"k": 1}
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is cls and again.details == {"k": 1}


def test_fields_travel_in_details() -> None:
    assert InvalidInput("bad", field="options.maxDepth").details == {"field": "options.maxDepth"}
    assert RateLimited("slow down", retry_after_s=7).retry_after_s == 7
    assert TaskNotFound("t-1").details == {"taskId": "t-1"}
    assert error_from_payload({"code": "NOPE", "message": "m"}).code == "INTERNAL_ERROR"


def test_tree_is_drawn_in_the_module_docstring() -> None:
    assert errors.__doc__ is not None
    for code in TABLE:
        assert code in errors.__doc__
