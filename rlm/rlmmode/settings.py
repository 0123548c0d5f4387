"""``RLM_RLM__*``: RLM mode's engine: its session hosts and the bounds of a request.

Example:
    ``RLM_RLM__HOSTS=4 RLM_RLM__MAX_DEPTH=3 rlm serve``
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["RLMSettings"]


class RLMSettings(BaseModel):
    """RLM mode (``input.operation: "rlm"``).

    Attributes:
        hosts: Session host actors, started with the engine; each runs many sessions.
        prestart: Fresh sandboxes each host keeps started, so no session waits for a process
            to start (each serves one RLM and is discarded after).
        max_iterations: The largest ``options.maxIterations`` a request may ask for.
        max_depth: The largest ``options.maxDepth`` (``rlm_query`` nesting) a request may ask
            for.
        max_children_in_flight: Child RLMs of one ``rlm_query_batched`` run at once (each
            holds a REPL process).
        max_context_bytes: The largest context (its JSON, or the file read from ``source``).
        max_reply_tokens: ``max_tokens`` of the root's turns and of sub-calls (default: the
            provider's ``defaultMaxTokens``).
    """

    model_config = ConfigDict(frozen=True)

    hosts: int = Field(default=2, ge=1, le=256)
    prestart: int = Field(default=2, ge=0, le=64)
    max_iterations: int = Field(default=100, ge=1, le=10_000)
    max_depth: int = Field(default=4, ge=1, le=16)
    max_children_in_flight: int = Field(default=16, ge=1, le=1024)
    max_context_bytes: int = Field(default=64 << 20, ge=1024)
    max_reply_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
