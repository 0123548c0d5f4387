"""The ready queue orders calls by priority, arrival and plan order."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rlm.scheduling import PRIORITY_RANK, ReadyQueue

priorities = st.sampled_from(["low", "normal", "high", "critical"])


@given(st.lists(st.tuples(priorities, st.integers(0, 50), st.integers(0, 50)), max_size=60))
def test_pops_in_priority_then_arrival_then_order(entries: list[tuple[str, int, int]]) -> None:
    q: ReadyQueue[tuple[str, int, int]] = ReadyQueue()
    for e in entries:
        q.push(e, priority=e[0], task_seq=e[1], order=e[2])  # type: ignore[arg-type]
    out = [q.pop() for _ in range(len(q))]
    keys = [(PRIORITY_RANK[p], s, o) for p, s, o in out]  # type: ignore[index]
    assert keys == sorted(keys)
    assert not q


def test_critical_jumps_ahead_of_earlier_low() -> None:
    q: ReadyQueue[str] = ReadyQueue()
    for i in range(5):
        q.push(f"low{i}", priority="low", task_seq=1, order=i)
    q.push("crit", priority="critical", task_seq=2, order=0)
    q.push("normal", priority="normal", task_seq=3, order=0)
    assert [q.pop() for _ in range(3)] == ["crit", "normal", "low0"]
