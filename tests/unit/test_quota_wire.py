"""Batch answers cross the actor boundary as compact slots and read back as the same values."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime

from rlm.errors import QuotaExceeded
from rlm.models.quotas import AllocationDecision
from rlm.quotas.records import Reservation, Settlement
from rlm.quotas.wire import pack_outcome, unpack_slot

AT = datetime(2028, 2, 29, 13, 30, 5, 123, tzinfo=UTC)


def test_every_kind_of_outcome_reads_back_equal_after_pickling() -> None:
    outcomes = [
        Reservation("res_1", "t1", "ada", 5, 7, 2, "team", ("a", "root"), AT),
        Reservation("res_2", "t2", "bob", 1, 0, 1, None, (), AT),
        Settlement("res_1", "t1", "ada", 5, 9, 3, False, AT),
        Settlement("res_2", "t2", "bob", 1, 0, 0, True, AT),
        AllocationDecision(allowed=True, reason="Quota available"),
        None,
    ]
    slots = pickle.loads(pickle.dumps([pack_outcome(o) for o in outcomes]))
    assert [kind for kind, _ in slots] == ["res", "res", "set", "set", "ok", "ok"]
    # The dataclasses travel as plain tuples: no class of ours is named in the bytes.
    assert b"Reservation" not in pickle.dumps(slots[:4])
    assert [unpack_slot(s) for s in slots] == outcomes


def test_an_error_travels_as_its_payload_and_comes_back_as_the_error() -> None:
    refused = QuotaExceeded("over", {"resource": "agents", "limit": 3, "used": 3})
    kind, payload = slot = pickle.loads(pickle.dumps(pack_outcome(refused)))
    assert (kind, payload["code"]) == ("err", "QUOTA_EXCEEDED")
    back = unpack_slot(slot)
    assert isinstance(back, QuotaExceeded)
    assert (back.message, back.details) == (refused.message, refused.details)
