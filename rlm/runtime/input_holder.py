"""The input holder: the actor that owns the large task inputs in the object store.

Ray frees an object when its owner, the process that called ``ray.put``, exits. A driver that
submits a task over a large input and then exits (a notebook cell's kernel restarted, a
``ray job submit`` script that only submits) would take the input with it, and the agents that
read it later would fail with ``OwnerDiedError``. ``ray.put(_owner=...)`` could once hand
ownership to an actor; Ray 2.56 removed it. So the caller sends the value to this actor, which
puts it itself: the object is owned by the holder, a child of the engine's core that lives as
long as the core does.

The holder keeps no reference of its own. The caller gets the reference back (wrapped in a
list, so Ray does not resolve it), hands it to the core inside the task's spec, and Ray's
reference counting does the rest: the object is freed when the last holder of a reference lets
go of it, which is the core when the task ends (the agents drop their cached copies then too,
see :meth:`rlm.runtime.scheduler.Scheduler.forget_input`).

Example:
    >>> refs = ray.get(holder.put.remote(items))                  # doctest: +SKIP
    >>> spec.items = ("ref", refs)                                 # doctest: +SKIP
"""

from __future__ import annotations

import threading
from typing import Any

import ray

__all__ = ["InputHolder", "InputHolderActor"]

#: How many ids of objects put the holder remembers for :meth:`InputHolder.live`.
_MAX_REMEMBERED = 4096


class InputHolder:
    """Puts task inputs into the object store as their owner; wrapped as
    :data:`InputHolderActor`."""

    def __init__(self) -> None:
        self._put: list[str] = []
        self._lock = threading.Lock()  # the actor runs several puts at once (threads)

    def put(self, value: Any) -> list[ray.ObjectRef[Any]]:
        """Put ``value`` into the object store, owned by this actor.

        Returns:
            The object's reference, in a list: a reference inside a value travels as a
            reference (Ray resolves only top-level arguments and results).
        """
        ref = ray.put(value)
        with self._lock:
            self._put.append(ref.hex())
            del self._put[:-_MAX_REMEMBERED]
        return [ref]

    def live(self) -> list[str]:
        """The ids of the objects this holder put that still exist (someone references them).

        An object leaves this list when Ray frees it: the owner's reference table is the one
        place that knows whether any process still references it.
        """
        core_worker = ray._private.worker.global_worker.core_worker
        counts = core_worker.get_all_reference_counts()
        with self._lock:
            self._put = [h for h in self._put if h.encode() in counts]
            return list(self._put)


#: The holder as a Ray actor: no CPU, a few puts at once (a put copies the value once; one
#: large input must not hold up the next caller's). Restarted when it dies alone: the objects
#: the dead one owned are lost with it (their tasks fail), but later tasks can put theirs.
InputHolderActor = ray.remote(num_cpus=0, max_concurrency=4, max_restarts=-1)(InputHolder)
