"""What a client is told when a process dies under its request: the envelope, and the taskId.

Two processes can die while an execute is in flight:

* **the engine's core actor** (the replica's call into it fails with Ray's ``RayActorError``):
  Ray restarts it, and the new core marks the tasks of the old one failed ("interrupted").
  :func:`engine_lost` waits (bounded by :data:`ENGINE_RETURN_S`) for the core to answer again
  and asks it whether the request's task was created; the client gets ``500 INTERNAL_ERROR``
  with that ``taskId`` (and its status), or without one when no task was created — then
  sending the request again is safe.
* **the API replica** itself: the proxy guard (:mod:`serve_app.guard`) answers in its stead. It
  names each execute's task before the request reaches a replica (the :data:`TASK_ID_HEADER`
  it sets, which :func:`chosen_task_id` reads), so it can look the task up on another replica.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

from rlm.admission import Viewer
from rlm.errors import InternalError, RLMError, TaskNotFound
from rlm.tasks.idempotency import IdempotencyKey

__all__ = ["ENGINE_RETURN_S", "TASK_ID_HEADER", "chosen_task_id", "engine_died", "engine_lost"]

log = logging.getLogger("rlm.api")

#: The request header carrying the id the proxy guard chose for an execute's task. The guard
#: overwrites whatever a client sent under this name.
TASK_ID_HEADER: Final = "x-rlm-task-id"
#: How long a replica waits for a restarted core before answering without knowing more.
ENGINE_RETURN_S: Final = 30.0


def engine_died(err: BaseException) -> bool:
    """Whether ``err`` is Ray's ``RayActorError``: the actor called (the engine's core) died.

    Told by its class's name, so the app imports without Ray (the unit tests build it so).
    """
    return any(
        c.__name__ == "RayActorError" and c.__module__ == "ray.exceptions"
        for c in type(err).__mro__
    )


def chosen_task_id(headers: Any) -> str | None:
    """The task id the proxy guard chose for this request, if it did."""
    value = headers.get(TASK_ID_HEADER)
    return value if isinstance(value, str) else None


async def engine_lost(
    hv: Any,
    task_id: str,
    viewer: Viewer | None,
    key: IdempotencyKey | None,
    err: BaseException,
    *,
    wait_s: float = ENGINE_RETURN_S,
) -> RLMError:
    """The error to answer an execute whose call into the engine died with ``err``.

    Args:
        hv: The engine (its ``ask``).
        task_id: The id the request's task was given.
        viewer: The caller (its tasks only).
        key: The request's idempotency key: a retry's task is the first request's.
        err: What the call raised (a ``RayActorError``).
        wait_s: How long to wait for the restarted engine.

    Returns:
        ``InternalError`` with ``taskId`` and ``status`` when the task was created (or when
        the engine did not come back in time to say, then ``status: "unknown"``), without
        them when it was not.
    """
    log.warning("the engine died under an execute (task %s): %s", task_id, type(err).__name__)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while True:
        try:
            status, _ = await asyncio.wait_for(
                hv.ask("lookup", task_id, viewer, key), max(0.1, deadline - loop.time())
            )
        except TaskNotFound:
            return InternalError(
                "the engine stopped before this request's task was created; nothing ran, and "
                "sending the request again is safe",
                {"retryable": True},
            )
        except Exception as again:
            if not (engine_died(again) or isinstance(again, TimeoutError)):
                raise
            if loop.time() >= deadline:
                return InternalError(
                    "the engine stopped while answering this request and has not come back "
                    f"yet; look the task up with GET /v1/tasks/{task_id} (it may not exist)",
                    {"taskId": task_id, "status": "unknown", "retryable": True},
                )
            await asyncio.sleep(0.2)
            continue
        found = status.task_id
        return InternalError(
            "the engine stopped while running this request's task; the task is "
            f"{status.status}: look it up with GET /v1/tasks/{found}",
            {"taskId": found, "status": status.status},
        )
