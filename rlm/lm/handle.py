"""The ``lm`` handle an operation calls: the one seam between pure operations and models.

Operations never import a client: while an agent call of an LM operation runs, the engine
binds a handle to the calling thread (:func:`lm_scope`), and the operation asks
:func:`current_lm` for it. On Ray the handle sends each request through the core (budgets,
quotas, memo cache, usage) to the provider's gateway actor; in tests and in the in-process
reference executor it can be any object with a ``complete`` method, e.g. :class:`FunctionLM`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol, runtime_checkable

from rlm.errors import InternalError
from rlm.lm.calls import LMRequest

__all__ = ["LM", "FunctionLM", "current_lm", "lm_scope"]


@runtime_checkable
class LM(Protocol):
    """What an LM operation may call."""

    def complete(self, request: LMRequest) -> str:
        """Send one chat completion and return the assistant's text.

        Raises:
            RLMError: the call was refused (budget, quota) or failed (provider errors).
            CallCancelled: the task was cancelled or timed out.
        """
        ...


class FunctionLM:
    """An :class:`LM` backed by a Python function (tests, local reference runs).

    Args:
        reply: ``reply(request) -> text``.
    """

    def __init__(self, reply: Callable[[LMRequest], str]) -> None:
        self._reply = reply
        self._lock = threading.Lock()
        self.requests: list[LMRequest] = []

    def complete(self, request: LMRequest) -> str:
        """Answer with ``reply(request)``, recording the request."""
        with self._lock:
            self.requests.append(request)
        return self._reply(request)


_local = threading.local()


@contextmanager
def lm_scope(lm: LM) -> Iterator[None]:
    """Bind ``lm`` to this thread while the block runs."""
    previous = getattr(_local, "lm", None)
    _local.lm = lm
    try:
        yield
    finally:
        _local.lm = previous


def current_lm() -> LM:
    """The handle bound to this thread.

    Raises:
        InternalError: no language model is bound (an LM operation run outside the engine
            without :func:`lm_scope`).
    """
    lm: LM | None = getattr(_local, "lm", None)
    if lm is None:
        raise InternalError(
            "this operation calls a language model, but none is bound to the running call"
        )
    return lm
