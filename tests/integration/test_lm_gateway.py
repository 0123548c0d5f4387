"""The LM gateway as a plain class on an event loop of the test's own, against FakeLMServer.

No Ray: :class:`LMGateway` is the plain class the gateway actor wraps, so what it does with the
provider's answers (errors, retries, limits) is tested here directly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from rlm.errors import InternalError
from rlm.lm.settings import ProviderSettings
from rlm.runtime.lm_gateway import LMGateway
from rlm.testing import FakeLMServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLMServer]:
    with FakeLMServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def _fresh(server: FakeLMServer) -> None:
    server.latency_s = 0.0
    server.reset_stats()


def _provider(url: str, **extra: Any) -> ProviderSettings:
    return ProviderSettings(base_url=url, api_key="test-key", model="fake-model", **extra)


def _call(text: str, tokens: int = 100) -> dict[str, Any]:
    return {
        "model": "fake-model",
        "messages": [{"role": "user", "content": text}],
        "maxTokens": 16,
        "temperature": 0.0,
        "tokens": tokens,
    }


def _run(gateway: LMGateway, tenant: str, call: dict[str, Any]) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        try:
            return await gateway.complete(tenant, call)
        finally:
            await gateway.close()

    return asyncio.run(main())


def test_a_refused_connection_is_unreachable_not_a_timeout() -> None:
    gateway = LMGateway(_provider("http://127.0.0.1:9/v1", max_retries=0, timeout_s=5))
    with pytest.raises(InternalError) as info:
        _run(gateway, "t", _call("hello"))
    assert info.value.details["reason"] == "unreachable"
    assert "unreachable" in info.value.message


def test_a_stalled_answer_is_a_timeout(server: FakeLMServer) -> None:
    server.stall_next(1, 3.0)
    gateway = LMGateway(_provider(server.url, max_retries=0, timeout_s=0.3))
    with pytest.raises(InternalError) as info:
        _run(gateway, "t", _call("stall"))
    assert info.value.details["reason"] == "timeout"
    assert "did not answer within 0.3 s" in info.value.message
