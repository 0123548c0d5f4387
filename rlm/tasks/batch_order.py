"""Numbered batches put back in the order their sender made them.

An RLM session host sends its events to the core as fire-and-forget actor calls, one per batch.
The core is an async actor, and Ray keeps the submission order of one caller's calls only for
synchronous, single-threaded actors (and not across retries), so two batches sent a moment
apart can run on the core the other way round: a turn's cell before the turn. The sender
numbers its batches; the core passes each through a :class:`BatchOrder`, which holds a batch
that came early until the ones before it are in, and drops one that came twice (a retried
call).
"""

from __future__ import annotations

from typing import Generic, TypeVar

__all__ = ["BatchOrder"]

T = TypeVar("T")


class BatchOrder(Generic[T]):
    """Releases batches numbered ``first, first + 1, …`` in that order.

    Args:
        first: The number of the first batch.
        max_held: Batches held at most while waiting for an earlier one; past it the gap is
            given up (that batch is taken as lost) and what is held is released in order, so
            a sender that lost a batch cannot make the core hold the rest for ever.
    """

    def __init__(self, first: int = 1, *, max_held: int = 256) -> None:
        if max_held < 1:
            raise ValueError(f"max_held must be at least 1, got {max_held}")
        self._next = first
        self._held: dict[int, T] = {}
        self._max_held = max_held
        #: Batch numbers given up as lost (see ``max_held``).
        self.skipped = 0

    @property
    def expected(self) -> int:
        """The number of the next batch to release."""
        return self._next

    @property
    def held(self) -> int:
        """How many batches wait for an earlier one."""
        return len(self._held)

    def accept(self, number: int, batch: T) -> list[T]:
        """Take batch ``number``; answer the batches now ready, in order (often just it).

        A number already released, or already held, is a duplicate: nothing is released.
        """
        if number < self._next or number in self._held:
            return []
        self._held[number] = batch
        if len(self._held) > self._max_held:
            first = min(self._held)
            self.skipped += first - self._next
            self._next = first
        return self._release()

    def drain(self) -> list[T]:
        """Every held batch, in order, whatever gaps are left (the sender is done)."""
        ready = [self._held[n] for n in sorted(self._held)]
        if self._held:
            self.skipped += max(self._held) + 1 - self._next - len(self._held)
            self._next = max(self._held) + 1
        self._held.clear()
        return ready

    def _release(self) -> list[T]:
        ready: list[T] = []
        while self._next in self._held:
            ready.append(self._held.pop(self._next))
            self._next += 1
        return ready
