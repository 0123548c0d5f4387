"""How a batch's answers cross the accountant's actor boundary: compact tuples, not dataclasses.

A frozen, slotted dataclass pickles through ``dataclasses``' generic ``__getstate__`` (a Python
loop over its fields) and unpickles through ``__setstate__``: ~9 µs to pickle and ~6 µs to
unpickle a :class:`~rlm.quotas.records.Reservation` on the benchmark machine, against ~0.2 µs
for a tuple of the same values. An admission answers twice (its reservation, then its
settlement), so on the accountant's side that was ~20 µs of CPU per admission, a quarter of
all it spent. Each slot of a batch's answer is therefore one of:

- ``("ok", value)``: any other value, pickled as it is;
- ``("err", payload)``: an :class:`~rlm.errors.RLMError`'s payload;
- ``("res", fields)``: a :class:`~rlm.quotas.records.Reservation` as its fields in order;
- ``("set", fields)``: a :class:`~rlm.quotas.records.Settlement` likewise.

:func:`pack_outcome` makes a slot in the accountant; :func:`unpack_slot` turns it back into
the value (or the error) on the caller's side.

Example:
    >>> from datetime import UTC, datetime
    >>> from rlm.quotas.records import Settlement
    >>> s = Settlement("res_1", "t1", "ada", 5, 4, 0, False, datetime(2028, 1, 1, tzinfo=UTC))
    >>> unpack_slot(pack_outcome(s)) == s
    True
"""

from __future__ import annotations

from typing import Any

from rlm.errors import RLMError, error_from_payload
from rlm.quotas.records import Reservation, Settlement

__all__ = ["Slot", "pack_outcome", "unpack_slot"]

#: One call's answer in a batch as it crosses the actor boundary: a kind and a plain value.
Slot = tuple[str, Any]


def pack_outcome(outcome: Any) -> Slot:
    """The slot for one call's outcome (its value, or the error it raised)."""
    kind = type(outcome)
    if kind is Reservation:
        r: Reservation = outcome
        return "res", (
            r.reservation_id,
            r.task_id,
            r.user_id,
            r.agents,
            r.compute_micro,
            r.concurrent_agents,
            r.team_id,
            r.org_ids,
            r.created_at,
        )
    if kind is Settlement:
        s: Settlement = outcome
        return "set", (
            s.reservation_id,
            s.task_id,
            s.user_id,
            s.agents_reserved,
            s.agent_calls,
            s.compute_micro,
            s.released,
            s.settled_at,
        )
    if isinstance(outcome, RLMError):
        return "err", outcome.to_payload()
    return "ok", outcome


def unpack_slot(slot: Slot) -> Any:
    """The value a slot made by :func:`pack_outcome` carries; an error slot's
    :class:`~rlm.errors.RLMError` is returned, not raised (the batch's other calls stood)."""
    kind, value = slot
    if kind == "res":
        return Reservation(*value)
    if kind == "set":
        return Settlement(*value)
    if kind == "err":
        return error_from_payload(value)
    return value
