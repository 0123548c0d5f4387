"""RLM mode, pure: what the root model reads and writes, its turn loop and its session tree.

The root model never reads the long context; it drives a Python REPL where the context is a
variable and sub-models are functions. This package holds the parts of RLM mode that need no
Ray, compatible with the reference implementation (``rlms`` 0.1.3) so that the same model
output drives both:

* :mod:`~rlm.rlmmode.blocks`: ```` ```repl ```` blocks and ``FINAL``/``FINAL_VAR`` in a reply;
* :mod:`~rlm.rlmmode.prompts`: the system prompt, the context's metadata, each turn's prompt;
* :mod:`~rlm.rlmmode.feedback`: a cell's output as the root reads it, truncated head + tail;
* :mod:`~rlm.rlmmode.answer`: when a turn has answered, and what the answer is;
* :mod:`~rlm.rlmmode.request`: an RLM task's request, validated;
* :mod:`~rlm.rlmmode.loop`: the turn loop of one RLM, over any REPL and model;
* :mod:`~rlm.rlmmode.session`: the session tree of one task (sub-calls, child RLMs, depth,
  budgets' refusals, stop), over ports the session host binds to Ray;
* :mod:`~rlm.rlmmode.operation`, :mod:`~rlm.rlmmode.settings`: the ``rlm`` operation a task
  spec carries, and ``RLM_RLM__*``.

The wire between a session and its REPL is the sandbox's own (:mod:`rlm.sandbox.framing`).

Only the protocol's names are re-exported here; import the others from their modules.
"""

from __future__ import annotations

from rlm.rlmmode.answer import (
    Resolution,
    answer_from_dict,
    answer_from_last_reply,
    resolve_final,
    turn_answer,
)
from rlm.rlmmode.blocks import FinalAnswer, extract_code_blocks, find_final
from rlm.rlmmode.feedback import (
    FEEDBACK_LIMIT,
    format_cell_feedback,
    format_turn_feedback,
    truncate_middle,
)
from rlm.rlmmode.prompts import (
    ContextMetadata,
    context_metadata,
    final_turn_prompt,
    system_prompt,
    turn_prompt,
)

__all__ = [
    "ContextMetadata",
    "FEEDBACK_LIMIT",
    "FinalAnswer",
    "Resolution",
    "answer_from_dict",
    "answer_from_last_reply",
    "context_metadata",
    "extract_code_blocks",
    "final_turn_prompt",
    "find_final",
    "format_cell_feedback",
    "format_turn_feedback",
    "resolve_final",
    "system_prompt",
    "truncate_middle",
    "turn_answer",
    "turn_prompt",
]
