"""An LM call's work written once as steps, run by a blocking or an async driver.

A built-in LM operation writes each call (a leaf, a combine, a fold) as a generator: it yields
each request it wants answered, is sent the reply's text, and returns the call's partial::

    def leaf_steps(self, chunk, params):
        reply = yield LMRequest.chat(f"Summarise: {chunk}")
        return reply.strip()

:func:`run_steps` drives such a generator with a blocking :class:`~rlm.lm.handle.LM` (what
``leaf`` does, on any thread); :func:`run_steps_async` drives it with an async ``complete``
(what the engine's in-process agent does on its event loop, so a call waiting on a model holds
no thread). Either way the same code builds the prompts and reads the replies.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import TypeVar

from rlm.lm.calls import LMRequest
from rlm.lm.handle import LM

__all__ = ["LMSteps", "run_steps", "run_steps_async"]

T = TypeVar("T")

#: A call's LM work: yields requests, is sent each reply's text, returns the partial.
LMSteps = Generator[LMRequest, str, T]


def run_steps(steps: LMSteps[T], lm: LM) -> T:
    """Answer each request of ``steps`` with ``lm.complete`` (blocking); the steps' result.

    Raises:
        Exception: whatever ``lm.complete`` or the steps raise (the steps are closed).
    """
    try:
        request = next(steps)
        while True:
            request = steps.send(lm.complete(request))
    except StopIteration as done:
        result: T = done.value
        return result
    finally:
        steps.close()


async def run_steps_async(steps: LMSteps[T], complete: Callable[[LMRequest], Awaitable[str]]) -> T:
    """Answer each request of ``steps`` with ``await complete(request)``; the steps' result.

    Raises:
        Exception: whatever ``complete`` or the steps raise (the steps are closed).
    """
    try:
        request = next(steps)
        while True:
            request = steps.send(await complete(request))
    except StopIteration as done:
        result: T = done.value
        return result
    finally:
        steps.close()
