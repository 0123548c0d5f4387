"""What a replica answers when the engine's core dies under an execute (``serve_app.crashes``)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from rlm.errors import InternalError, TaskNotFound
from rlm.models.tasks import TaskStatus
from serve_app.crashes import engine_died, engine_lost

# Ray's class as the replica sees it, without importing Ray (the unit suite never does).
RayActorError = type("RayActorError", (Exception,), {"__module__": "ray.exceptions"})
ActorDiedError = type("ActorDiedError", (RayActorError,), {"__module__": "ray.exceptions"})


class Engine:
    """Answers ``lookup`` from a script: errors to raise, then a value."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.asked: list[tuple[Any, ...]] = []

    async def ask(self, method: str, *args: Any) -> tuple[Any, dict[str, str]]:
        self.asked.append((method, *args))
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer, {}


def lost(engine: Engine, wait_s: float = 30.0) -> Any:
    return asyncio.run(
        engine_lost(engine, "task-1", None, None, ActorDiedError("died"), wait_s=wait_s)
    )


def test_ray_actor_errors_are_told_by_name_not_by_import() -> None:
    assert engine_died(ActorDiedError("x")) and engine_died(RayActorError("x"))
    assert not engine_died(RuntimeError("x"))
    assert not engine_died(type("RayActorError", (Exception,), {})("not Ray's"))


def test_a_task_the_restarted_engine_knows_is_named_with_its_status() -> None:
    status = TaskStatus(task_id="task-1", status="failed", created_at=datetime.now(UTC))
    engine = Engine(ActorDiedError("restarting"), status)
    err = lost(engine)
    assert isinstance(err, InternalError)
    assert err.details == {"taskId": "task-1", "status": "failed"}
    assert [a[0] for a in engine.asked] == ["lookup", "lookup"]


def test_no_task_means_nothing_ran() -> None:
    err = lost(Engine(TaskNotFound("task-1")))
    assert err.details == {"retryable": True}
    assert "nothing ran" in err.message


def test_an_engine_that_does_not_come_back_in_time_leaves_the_task_unknown() -> None:
    err = lost(Engine(*[ActorDiedError("down")] * 100), wait_s=0.3)
    assert err.details == {"taskId": "task-1", "status": "unknown", "retryable": True}
