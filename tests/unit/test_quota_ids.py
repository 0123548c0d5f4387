"""Reservation and token-hold ids: 128 random bits each, never repeated, not even across fork."""

from __future__ import annotations

import multiprocessing
import re

from rlm.quotas.ids import random_hex


def test_ids_are_32_hex_digits_and_distinct() -> None:
    ids = [random_hex() for _ in range(20_000)]  # several refills of the buffer
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def _child_id(out: multiprocessing.Queue[str]) -> None:
    out.put(random_hex())


def test_a_forked_child_does_not_repeat_its_parents_next_id() -> None:
    random_hex()  # the parent's buffer is filled and part used
    ctx = multiprocessing.get_context("fork")
    out: multiprocessing.Queue[str] = ctx.Queue()
    child = ctx.Process(target=_child_id, args=(out,))
    child.start()
    from_child = out.get(timeout=30)
    child.join(timeout=30)
    # Had the child kept the inherited buffer, it would hand out the parent's next id.
    assert from_child != random_hex()
