"""Test support shipped with the package: an OpenAI-compatible stand-in for a paid LM API, and
a webhook receiver on loopback.

:class:`FakeLMServer` serves the real OpenAI protocol on loopback with deterministic replies,
a documented token count, fault injection and measurements, for tests, benchmarks and demos on
a machine without internet. :class:`WebhookReceiver` records the webhook deliveries it gets
and answers as a test scripts it (statuses, ``Retry-After``, hangs). Pure Python: no Ray, no
pytest.

Example:
    >>> from rlm.testing import FakeLMServer, scripted
    >>> with FakeLMServer(responder=scripted(["42"])) as server:            # doctest: +SKIP
    ...     ...  # point an OpenAI client at server.url with api_key="test-key"
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rlm.testing.responders import TENANT_HEADER, ChatRequest, Responder, by_prompt, echo, scripted
from rlm.testing.stats import ServerStats, TenantStats
from rlm.testing.tokens import count_prompt_tokens, count_tokens, truncate_to_tokens

if TYPE_CHECKING:
    from rlm.testing.openai_server import DEFAULT_MODELS, FakeLMServer
    from rlm.testing.webhook_receiver import ReceivedWebhook, WebhookReceiver

__all__ = [
    "ChatRequest",
    "DEFAULT_MODELS",
    "FakeLMServer",
    "ReceivedWebhook",
    "Responder",
    "ServerStats",
    "TENANT_HEADER",
    "TenantStats",
    "WebhookReceiver",
    "by_prompt",
    "count_prompt_tokens",
    "count_tokens",
    "echo",
    "scripted",
    "truncate_to_tokens",
]


def __getattr__(name: str) -> Any:
    # Imported on first use so ``python -m rlm.testing.openai_server`` finds the module unloaded
    # (runpy warns when the package has already imported the module it is asked to run).
    if name in ("DEFAULT_MODELS", "FakeLMServer"):
        from rlm.testing import openai_server

        return getattr(openai_server, name)
    if name in ("ReceivedWebhook", "WebhookReceiver"):
        from rlm.testing import webhook_receiver

        return getattr(webhook_receiver, name)
    raise AttributeError(f"module 'rlm.testing' has no attribute {name!r}")
