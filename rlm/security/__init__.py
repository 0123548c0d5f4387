"""Security: input policies, validation, and the hash-chained audit log (pure; no Ray).

What other modules call:

- :func:`validate_text` — check one prompt or text against an org's policies (an RLM session
  calls it for each prompt before sending it); a ``critical`` violation refuses it.
- :func:`record_security_event` — append an event to the audit log (sandbox violations,
  webhook changes...), through the sink the process installed
  (:func:`rlm.runtime.security.install_event_sink`).

The runtime side (:mod:`rlm.runtime.security`) adds the security actor, the event sink of a
process, and ``PromptGuard``: :func:`validate_text` with the org's policies and the
violations recorded, in one call per prompt.
"""

from __future__ import annotations

from rlm.security.events import (
    EVENT_TYPES,
    EventSink,
    SecurityEventIn,
    install_sink,
    record_security_event,
    record_violations,
)
from rlm.security.policies import DEFAULT_POLICIES, PolicySet
from rlm.security.validator import InputValidator, ValidationResult, validate_text

__all__ = [
    "DEFAULT_POLICIES",
    "EVENT_TYPES",
    "EventSink",
    "InputValidator",
    "PolicySet",
    "SecurityEventIn",
    "ValidationResult",
    "install_sink",
    "record_security_event",
    "record_violations",
    "validate_text",
]
