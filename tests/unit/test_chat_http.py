"""ChatClient against the real ``openai`` client, on FakeLMServer: the same request on the
wire, the same exceptions back (no Ray).

The gateway sends through :class:`ChatClient` instead of ``openai.AsyncOpenAI`` to save CPU;
these tests hold it to the client it replaces, side by side on one server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import openai
import orjson
import pytest
from openai.types.chat import ChatCompletion

from rlm.lm.chat_http import ChatClient, _env_proxy
from rlm.testing import FakeLMServer

KEY = "test-key"

#: Headers that differ per request or per HTTP library (not part of what the client says).
_TRANSPORT = {"host", "content-length", "accept-encoding", "connection", "x-stainless-retry-count"}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLMServer]:
    with FakeLMServer(context_window=64) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _fresh(server: FakeLMServer) -> None:
    server.latency_s = 0.0
    server.reset_stats()


def _body(model: str = "fake-model", text: str = "hello") -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": text}],
        "max_tokens": 8,
        "temperature": 0.0,
    }


def _both(
    url: str, key: str, send: Callable[[Callable[[dict[str, Any]], Awaitable[Any]]], Awaitable[Any]]
) -> tuple[Any, Any]:
    """``send`` run once through the openai client and once through ChatClient; each result
    or the exception it raised."""

    async def main() -> tuple[Any, Any]:
        reference = openai.AsyncOpenAI(base_url=url, api_key=key, max_retries=0, timeout=0.5)
        ours = ChatClient(url, key, timeout_s=0.5, max_connections=4)

        async def via_openai(body: dict[str, Any]) -> Any:
            return await reference.post("/chat/completions", cast_to=bytes, body=body)

        outcomes = []
        for create in (via_openai, ours.create):
            try:
                outcomes.append(await send(create))
            except Exception as err:
                outcomes.append(err)
        await reference.close()
        await ours.close()
        return outcomes[0], outcomes[1]

    return asyncio.run(main())


def test_the_request_is_the_one_the_openai_client_sends(
    server: FakeLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_ORG_ID", "org-42")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-7")
    want, got = _both(server.url, KEY, lambda create: create(_body()))
    assert isinstance(got, bytes)
    answer, reference = orjson.loads(got), orjson.loads(want)
    for name in ("object", "model", "choices", "usage"):  # not the id nor the time
        assert answer[name] == reference[name], name
    assert ChatCompletion.model_validate_json(got).choices[0].message.content
    first, second = server.requests
    assert second.raw == first.raw
    theirs = {k: v for k, v in first.headers.items() if k not in _TRANSPORT}
    ours = {k: v for k, v in second.headers.items() if k not in _TRANSPORT}
    assert ours == theirs
    assert ours["authorization"] == f"Bearer {KEY}"
    assert ours["openai-organization"] == "org-42" and ours["openai-project"] == "proj-7"
    assert ours["user-agent"].startswith("AsyncOpenAI/Python")


def _same_error(want: Any, got: Any) -> None:
    assert type(got) is type(want), (got, want)
    assert str(got) == str(want)
    for name in ("status_code", "code", "type", "param", "body"):
        assert getattr(got, name, None) == getattr(want, name, None), name


@pytest.mark.parametrize(
    ("setup", "body", "kind"),
    [
        ("429", _body(), openai.RateLimitError),
        ("500", _body(), openai.InternalServerError),
        ("503", _body(), openai.InternalServerError),
        ("418", _body(), openai.APIStatusError),
        ("", _body(model="no-such-model"), openai.NotFoundError),
        ("", _body(text="word " * 200), openai.BadRequestError),
    ],
)
def test_error_statuses_raise_what_the_openai_client_raises(
    server: FakeLMServer, setup: str, body: dict[str, Any], kind: type[Exception]
) -> None:
    if setup:
        server.fail_next(2, status=int(setup), retry_after_s=0.25)
    want, got = _both(server.url, KEY, lambda create: create(body))
    assert isinstance(want, kind)
    _same_error(want, got)
    if setup == "429":
        assert got.response.headers["retry-after"] == want.response.headers["retry-after"]
    if kind is openai.BadRequestError:
        assert got.code == "context_length_exceeded"


def test_a_rejected_key_raises_what_the_openai_client_raises(server: FakeLMServer) -> None:
    want, got = _both(server.url, "wrong-key", lambda create: create(_body()))
    assert isinstance(want, openai.AuthenticationError)
    _same_error(want, got)


def test_no_answer_in_time_is_a_timeout(server: FakeLMServer) -> None:
    server.stall_next(2, 2.0)
    want, got = _both(server.url, KEY, lambda create: create(_body()))
    assert type(want) is openai.APITimeoutError and type(got) is openai.APITimeoutError


def test_no_server_is_a_connection_error() -> None:
    want, got = _both("http://127.0.0.1:9/v1", KEY, lambda create: create(_body()))
    assert type(want) is openai.APIConnectionError and type(got) is openai.APIConnectionError


def test_the_proxy_is_the_environments(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        for variant in (name, name.lower()):
            monkeypatch.delenv(variant, raising=False)
    assert _env_proxy("https://api.example.com/v1/chat/completions") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("ALL_PROXY", "http://all.internal:3128")
    assert _env_proxy("https://api.example.com/v1/chat/completions") == "http://proxy.internal:3128"
    assert _env_proxy("http://models.lan:8000/v1/chat/completions") == "http://all.internal:3128"
    monkeypatch.setenv("NO_PROXY", "example.com,localhost")
    assert _env_proxy("https://api.example.com/v1/chat/completions") is None
    assert _env_proxy("http://localhost:8000/v1/chat/completions") is None
