"""The input policies on what an LM operation sends of a task's storage source.

``POST /v1/execute`` validates a task's inline items before it is admitted, but the items of a
task over a file in storage (``input.source``) are read by the agents, range by range, and
the API never sees them. For an operation that calls a model (``llm_map``, ``llm_classify``,
``llm_summarize``, a user's LM operation) those items reach the model inside its prompts, so
the core checks each such prompt with the task's org's ``input_validation`` policies before
the broker sends it: a critical violation refuses the request (and so the task) with 400
``INVALID_INPUT``, violations in ``details``; what is found is recorded as
``policy.violation`` (source ``storage``, with the ``taskId``). Inline items are not scanned
again here: admission did that. (RLM sessions check their own prompts, see
:class:`~rlm.runtime.security.PromptGuard`.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rlm.config import Settings
from rlm.lm.calls import LMRequest
from rlm.runtime.run import TaskSpec
from rlm.runtime.security import PromptGuard
from rlm.security.validator import refusal

__all__ = ["SourcePrompts", "reads_storage"]


def reads_storage(spec: TaskSpec) -> bool:
    """Whether the task's items come from a storage source (the API never saw them)."""
    return bool(spec.items) and spec.items[0] == "source"


class SourcePrompts:
    """Checks the prompts of LM requests of storage-backed tasks (on the core's loop).

    Args:
        settings: The service settings (which state directory's security actor).
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._guard: PromptGuard | None = None

    async def refusal(self, spec: TaskSpec, requests: Sequence[LMRequest]) -> dict[str, Any] | None:
        """The error payload refusing ``requests`` of ``spec``'s task, or ``None`` to send.

        Only the user messages are checked (a system message is the operation's own text).
        """
        if not reads_storage(spec):
            return None
        texts = [
            str(message.get("content", ""))
            for request in requests
            for message in request.messages
            if message.get("role") == "user"
        ]
        if not texts:
            return None
        if self._guard is None:  # the security actor is looked up on first need
            self._guard = PromptGuard(self._settings, source="storage")
        guard = self._guard
        policies = await guard.policies_async(spec.org_id)
        result = guard.check_many_with(
            policies,
            texts,
            org_id=spec.org_id,
            user_id=spec.owner_id,
            field="input.source.prompt",
            task_id=spec.task_id,
        )
        if result.allowed:
            return None
        return refusal(result.violations, "a prompt built from the task's source").to_payload()
