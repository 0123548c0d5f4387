"""How each mode answers a question through the engine (``hv.execute``).

* ``direct``: the whole window and the question in one prompt, one LM call. It runs as
  ``llm_map`` over the window's lines with ``leafSize`` = every line, so the one chunk is the
  window itself (``llm_map`` joins a chunk's items with line breaks) and the template puts the
  question after it. No LM operation takes "a context and a question" as such; this is the
  nearest, and it sends exactly the text a direct prompt would.
* ``map-reduce``: ``llm_classify`` labels the lines in the question's scope with the data
  set's labels (the scope, a user or a date range, is read from the lines in Python: lines
  carry dates and users, not labels), then the answer is computed in Python from the label
  counts (:meth:`~rlm.eval.questions.QuestionSpec.answer_from_counts`).
* ``rlm``: one RLM task (:mod:`rlm.rlmmode.request`), ``{"operation": "rlm", "context":
  <window text>, "query": <question>}`` with the RLM options (``model``, ``subModel``,
  ``maxIterations``, ``maxDepth``); its output is the answer. RLM tasks use the default
  provider (they take no ``provider``).

Each run records the reply, the status, the client-side latency, and the task's agent calls
and LM usage.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from rlm.errors import InvalidInput
from rlm.eval.questions import Question
from rlm.eval.windows import Window, parse_line
from rlm.models.tasks import ExecuteResponse

__all__ = [
    "CLASSIFY_INSTRUCTION",
    "MODES",
    "EvalEngine",
    "ModeConfig",
    "ModeRun",
    "check_rlm_config",
    "direct_prompt",
    "direct_request",
    "map_reduce_request",
    "rlm_request",
    "run_mode",
    "scoped_instances",
]

#: The modes, in the order a run lists them.
MODES = ("rlm", "direct", "map-reduce")

#: What ``map-reduce`` asks ``llm_classify`` to do with each line.
CLASSIFY_INSTRUCTION = (
    "Classify each numbered line into exactly one of the labels. For a question, the label "
    "is the type of answer it asks for."
)


class EvalEngine(Protocol):
    """What the evaluation needs of the engine: :meth:`rlm.Hypervisor.execute`."""

    def execute(self, request: Mapping[str, Any]) -> ExecuteResponse:
        """Run a task and wait for its result."""
        ...


@dataclass(frozen=True)
class ModeConfig:
    """Settings every mode's requests share.

    Attributes:
        model: The model (``params.model``); ``None``: the provider's default.
        provider: The provider (``params.provider``); ``None``: the default provider.
        timeout_ms: Each task's ``timeoutMs``.
        memo: Whether identical temperature-0 calls may be answered from the memo cache. Off
            by default: every question is measured on its own.
        max_tokens: Completion tokens per call for ``direct`` (``None``: the provider's).
        sub_model: ``rlm``: the sub-calls' model (``options.subModel``; ``None``: the
            provider's ``subModel``, else ``model``).
        max_iterations: ``rlm``: root turns (``options.maxIterations``; ``None``: 30).
        max_depth: ``rlm``: ``rlm_query`` nesting (``options.maxDepth``; ``None``: 1).
    """

    model: str | None = None
    provider: str | None = None
    timeout_ms: int | None = 600_000
    memo: bool = False
    max_tokens: int | None = None
    sub_model: str | None = None
    max_iterations: int | None = None
    max_depth: int | None = None

    def params(self) -> dict[str, Any]:
        """The LM parameters LM operations take."""
        out: dict[str, Any] = {}
        if self.model is not None:
            out["model"] = self.model
        if self.provider is not None:
            out["provider"] = self.provider
        return out

    def options(self, **extra: Any) -> dict[str, Any]:
        """A request's ``options``."""
        out: dict[str, Any] = {"memo": self.memo, **extra}
        if self.timeout_ms is not None:
            out["timeoutMs"] = self.timeout_ms
        return out

    def rlm_options(self) -> dict[str, Any]:
        """An ``rlm`` task's ``options``: the shared ones and the RLM mode's."""
        named = {
            "model": self.model,
            "subModel": self.sub_model,
            "maxIterations": self.max_iterations,
            "maxDepth": self.max_depth,
        }
        return self.options(**{k: v for k, v in named.items() if v is not None})


@dataclass(frozen=True)
class ModeRun:
    """One question answered in one mode.

    Attributes:
        reply: The answer text (``None`` when the task failed).
        status: The task's status (``completed``, ``failed``...).
        error: The task's error message, if any.
        latency_ms: Wall time from sending the request to holding the answer.
        task_id: The engine's task id.
        agent_calls: The task's agent calls.
        lm_calls: LM requests answered (cached ones included).
        cached_calls: Of those, answered from the memo cache.
        input_tokens: Prompt tokens the provider reported.
        output_tokens: Completion tokens the provider reported.
        cost_usd: The calls' price.
    """

    reply: str | None
    status: str
    error: str | None
    latency_ms: float
    task_id: str | None = None
    agent_calls: int = 0
    lm_calls: int = 0
    cached_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0


def direct_prompt(question: Question) -> str:
    """The ``llm_map`` template of a direct question: the data (``{chunk}``), then the question."""
    return f"Here is the data:\n\n{{chunk}}\n\n{question.prompt}"


def direct_request(window: Window, question: Question, config: ModeConfig) -> dict[str, Any]:
    """The ``direct`` task: one ``llm_map`` call whose chunk is the whole window."""
    params: dict[str, Any] = {"prompt": direct_prompt(question), **config.params()}
    if config.max_tokens is not None:
        params["maxTokens"] = config.max_tokens
    lines = window.rendered_lines
    return {
        "type": "parallel",
        "description": f"OOLONG {question.id} direct",
        "input": {"items": lines, "operation": "llm_map", "params": params},
        "options": config.options(leafSize=max(1, len(lines))),
    }


def scoped_instances(window_text: str, question: Question) -> list[str]:
    """The instance texts of the window lines in the question's scope, read from the text."""
    scope = question.spec.scope
    out: list[str] = []
    for raw in window_text.splitlines():
        line = parse_line(raw)
        if line is not None and scope.admits(line.day, line.user):
            out.append(line.text)
    return out


def map_reduce_request(
    items: Sequence[str], question: Question, config: ModeConfig
) -> dict[str, Any]:
    """The ``map-reduce`` task: ``llm_classify`` over the instances in scope."""
    params = {
        "labels": list(question.spec.labels),
        "instruction": CLASSIFY_INSTRUCTION,
        **config.params(),
    }
    return {
        "type": "parallel",
        "description": f"OOLONG {question.id} map-reduce",
        "input": {"items": list(items), "operation": "llm_classify", "params": params},
        "options": config.options(),
    }


def check_rlm_config(config: ModeConfig) -> None:
    """Refuse settings the ``rlm`` mode cannot take.

    Raises:
        InvalidInput: ``config.provider`` is set (RLM tasks use the default provider).
    """
    if config.provider is not None:
        raise InvalidInput(
            "mode 'rlm' takes no provider: RLM tasks use the default provider (drop --provider "
            "or leave rlm out of --modes)",
            field="provider",
        )


def rlm_request(window: Window, question: Question, config: ModeConfig) -> dict[str, Any]:
    """The ``rlm`` task: the window as ``context``, the question as ``query``.

    Raises:
        InvalidInput: ``config.provider`` is set (RLM tasks use the default provider).
    """
    check_rlm_config(config)
    return {
        "type": "recursive",
        "description": f"OOLONG {question.id} rlm",
        "input": {"operation": "rlm", "context": window.text, "query": question.prompt},
        "options": config.rlm_options(),
    }


def _recorded(result: ExecuteResponse, reply: str | None, started: float) -> ModeRun:
    usage = result.usage
    error = result.error.message if result.error is not None else None
    return ModeRun(
        reply=reply if result.status == "completed" else None,
        status=result.status,
        error=error,
        latency_ms=(time.perf_counter() - started) * 1000,
        task_id=result.task_id,
        agent_calls=result.agent_calls,
        lm_calls=usage.lm_calls if usage else 0,
        cached_calls=usage.cached_calls if usage else 0,
        input_tokens=usage.input_tokens if usage else 0,
        output_tokens=usage.output_tokens if usage else 0,
        cost_usd=usage.cost_usd if usage else 0.0,
    )


def _text_output(output: Any) -> str | None:
    if isinstance(output, str):
        return output
    if isinstance(output, list) and len(output) == 1 and isinstance(output[0], str):
        return output[0]
    return None


def run_mode(
    mode: str, engine: EvalEngine, window: Window, question: Question, config: ModeConfig
) -> ModeRun:
    """Answer ``question`` about ``window`` in ``mode``.

    Args:
        mode: One of :data:`MODES`.
        engine: The engine (an :class:`rlm.Hypervisor`).
        window: The question's window.
        question: The question.
        config: The requests' shared settings.

    Returns:
        The run; a task that failed is a run with no reply (it scores 0), not an error.

    Raises:
        InvalidInput: a request the engine refused (e.g. no LM provider configured).
    """
    started = time.perf_counter()
    if mode == "direct":
        result = engine.execute(direct_request(window, question, config))
        return _recorded(result, _text_output(result.output), started)
    if mode == "map-reduce":
        items = scoped_instances(window.text, question)
        if not items:
            # Nothing in scope: the answer needs no model (never the case for generated
            # questions, whose scopes are not empty).
            empty = question.spec.format_answer(question.spec.answer_from_counts({}))
            return ModeRun(empty, "completed", None, (time.perf_counter() - started) * 1000)
        result = engine.execute(map_reduce_request(items, question, config))
        counted: str | None = None
        if result.status == "completed" and isinstance(result.output, Mapping):
            counts = {str(k): int(v) for k, v in result.output.items()}
            counted = question.spec.format_answer(question.spec.answer_from_counts(counts))
        return _recorded(result, counted, started)
    if mode == "rlm":
        result = engine.execute(rlm_request(window, question, config))
        return _recorded(result, _text_output(result.output), started)
    raise InvalidInput(f"unknown mode {mode!r}; known: {', '.join(MODES)}", field="modes")
