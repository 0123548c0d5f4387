"""Idempotency keys: fingerprints of canonical JSON, key checks, and the refusal of a new body."""

from __future__ import annotations

import pytest

from rlm.errors import InvalidInput
from rlm.tasks.idempotency import IdempotencyKey, IdempotentTask, fingerprint


def test_the_fingerprint_ignores_key_order_and_whitespace_not_values() -> None:
    a = fingerprint({"type": "recursive", "input": {"items": [1, 2], "operation": "sum"}})
    b = fingerprint({"input": {"operation": "sum", "items": [1, 2]}, "type": "recursive"})
    assert a == b
    assert a != fingerprint({"type": "recursive", "input": {"items": [2, 1], "operation": "sum"}})
    # Integers beyond 64 bits (which orjson refuses) are fingerprinted too.
    assert fingerprint({"n": 2**70}) != fingerprint({"n": 2**70 + 1})


@pytest.mark.parametrize("key", ["", "x" * 201, "caf\u00e9", "tab\there"])
def test_a_bad_key_is_refused_naming_the_header(key: str) -> None:
    with pytest.raises(InvalidInput) as info:
        IdempotencyKey.of("alice", key, {})
    assert info.value.details["field"] == "Idempotency-Key"


def test_the_same_key_with_another_body_is_refused_with_the_first_task() -> None:
    first = IdempotencyKey.of("alice", "k", {"a": 1})
    named = IdempotentTask("task-1", first.fingerprint, 0.0)
    named.check(IdempotencyKey.of("alice", "k", {"a": 1}))  # the same body: no error
    with pytest.raises(InvalidInput) as info:
        named.check(IdempotencyKey.of("alice", "k", {"a": 2}))
    assert info.value.status == 400
    assert info.value.details == {
        "idempotencyKey": "k",
        "taskId": "task-1",
        "field": "Idempotency-Key",
    }
