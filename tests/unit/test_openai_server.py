"""FakeLMServer, the project's stand-in for a paid LM API, driven by the real ``openai`` client.

The server speaks OpenAI's wire protocol on loopback, so these tests use ``openai.OpenAI`` and
``openai.AsyncOpenAI`` exactly as production code would against the paid service: if the shapes
drifted from what the client parses, these tests would fail. No Ray.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st
from openai import AsyncOpenAI, OpenAI

import rlm
from rlm.testing import (
    ChatRequest,
    FakeLMServer,
    ServerStats,
    by_prompt,
    count_prompt_tokens,
    count_tokens,
    scripted,
    truncate_to_tokens,
)

KEY = "test-key"
MODEL = "fake-model"

Serve = Callable[..., FakeLMServer]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Start FakeLMServers with the given options; all are stopped after the test."""
    started: list[FakeLMServer] = []

    def start(*args: Any, **kwargs: Any) -> FakeLMServer:
        server = FakeLMServer(*args, **kwargs).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def client_for(server: FakeLMServer, **kwargs: Any) -> OpenAI:
    kwargs.setdefault("api_key", KEY)
    kwargs.setdefault("max_retries", 0)
    return OpenAI(base_url=server.url, **kwargs)


def ask(client: OpenAI, prompt: str, **kwargs: Any) -> Any:
    kwargs.setdefault("model", MODEL)
    return client.chat.completions.create(messages=[{"role": "user", "content": prompt}], **kwargs)


def expected_echo(prompt: str) -> str:
    return f"echo: {hashlib.sha256(prompt.encode()).hexdigest()[:8]} {len(prompt)}"


# -- replies and usage --------------------------------------------------------------------------


def test_reply_has_openai_shape_and_deterministic_content(serve: Serve) -> None:
    server = serve()
    assert server.url.startswith("http://127.0.0.1:") and server.url.endswith("/v1")
    with client_for(server) as client:
        first = ask(client, "What is 2+2?")
        second = ask(client, "What is 2+2?")
        other = ask(client, "What is 3+3?")
    assert first.object == "chat.completion"
    assert first.id.startswith("chatcmpl-")
    assert first.model == MODEL
    assert first.created > 0
    (choice,) = first.choices
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert choice.finish_reason == "stop"
    assert choice.message.content == expected_echo("What is 2+2?")
    assert second.choices[0].message.content == choice.message.content
    assert other.choices[0].message.content == expected_echo("What is 3+3?")
    assert other.choices[0].message.content != choice.message.content


def test_usage_follows_the_documented_token_rule(serve: Serve) -> None:
    server = serve(responder=scripted(["x" * 13]))
    system, user = "You are terse.", "Summarise the following paragraph, please."
    with client_for(server) as client:
        reply = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
        )
    prompt_tokens = (4 + math.ceil(len(system) / 4)) + (4 + math.ceil(len(user) / 4))
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == prompt_tokens
    assert reply.usage.completion_tokens == 4  # ceil(13 / 4)
    assert reply.usage.total_tokens == prompt_tokens + 4


def test_max_tokens_truncates_the_reply(serve: Serve) -> None:
    server = serve(responder=scripted(["abcdefghij" * 10]))
    with client_for(server) as client:
        cut = ask(client, "long", max_tokens=5)
        cut_new_name = ask(client, "long", max_completion_tokens=3)
        whole = ask(client, "long", max_tokens=1000)
    assert cut.choices[0].message.content == ("abcdefghij" * 10)[:20]
    assert cut.choices[0].finish_reason == "length"
    assert cut.usage is not None and cut.usage.completion_tokens == 5
    assert cut_new_name.choices[0].message.content == "abcdefghijab"
    assert whole.choices[0].message.content == "abcdefghij" * 10
    assert whole.choices[0].finish_reason == "stop"


@given(text=st.text(max_size=200), max_tokens=st.integers(min_value=1, max_value=80))
def test_truncation_keeps_the_longest_prefix_within_the_budget(text: str, max_tokens: int) -> None:
    cut = truncate_to_tokens(text, max_tokens)
    assert text.startswith(cut)
    assert count_tokens(cut) <= max_tokens
    if count_tokens(text) <= max_tokens:
        assert cut == text
    else:
        assert count_tokens(cut) == max_tokens


def test_omit_usage_answers_without_usage(serve: Serve) -> None:
    server = serve(omit_usage=True)
    with client_for(server) as client:
        reply = ask(client, "hi")
    assert reply.usage is None
    assert reply.choices[0].message.content == expected_echo("hi")


def test_scripted_cycles_and_by_prompt_sees_the_last_user_message(serve: Serve) -> None:
    server = serve(responder=scripted(["a", "b"]))
    with client_for(server) as client:
        assert [ask(client, "q").choices[0].message.content for _ in range(3)] == ["a", "b", "a"]
    server = serve(responder=by_prompt(str.upper))
    with client_for(server) as client:
        reply = client.chat.completions.create(
            model=MODEL,
            messages=[
                {"role": "user", "content": "first"},
                {"role": "assistant", "content": "ok"},
                {"role": "user", "content": [{"type": "text", "text": "second"}]},
            ],
        )
    assert reply.choices[0].message.content == "SECOND"


def test_received_requests_are_kept_parsed_and_bounded(serve: Serve) -> None:
    server = serve(history=3)
    with client_for(server) as client:
        for i in range(5):
            ask(client, f"prompt {i}", temperature=0.5, max_tokens=50)
    kept = server.requests
    assert [r.last_user_message for r in kept] == ["prompt 2", "prompt 3", "prompt 4"]
    assert all(isinstance(r, ChatRequest) for r in kept)
    assert kept[0].model == MODEL
    assert kept[0].temperature == 0.5
    assert kept[0].max_tokens == 50
    assert kept[0].messages == [{"role": "user", "content": "prompt 2"}]
    assert kept[0].headers["authorization"] == f"Bearer {KEY}"
    assert server.stats().requests == 5


def test_models_are_listed_and_retrievable(serve: Serve) -> None:
    server = serve()
    with client_for(server) as client:
        assert [m.id for m in client.models.list()] == ["fake-model", "fake-sub-model"]
        assert client.models.retrieve("fake-sub-model").id == "fake-sub-model"
        with pytest.raises(openai.NotFoundError):
            client.models.retrieve("gpt-9")


# -- refusals -----------------------------------------------------------------------------------


def test_wrong_key_is_refused_401_and_no_key_needed_when_api_key_is_none(serve: Serve) -> None:
    server = serve()
    with (
        client_for(server, api_key="wrong") as client,
        pytest.raises(openai.AuthenticationError) as refused,
    ):
        ask(client, "hi")
    assert refused.value.status_code == 401
    assert refused.value.code == "invalid_api_key"
    assert server.stats().refused == {401: 1}

    open_server = serve(api_key=None)
    with client_for(open_server, api_key="anything") as client:
        assert ask(client, "hi").choices[0].message.content == expected_echo("hi")


def test_unknown_model_is_refused_404(serve: Serve) -> None:
    server = serve()
    with client_for(server) as client, pytest.raises(openai.NotFoundError) as refused:
        ask(client, "hi", model="gpt-9")
    assert refused.value.code == "model_not_found"
    assert refused.value.type == "invalid_request_error"
    assert "gpt-9" in refused.value.message


def test_prompt_over_the_context_window_is_refused_400(serve: Serve) -> None:
    server = serve(context_window=20)
    fits = "x" * 64  # 4 + 16 = 20 tokens: exactly the window
    assert count_prompt_tokens([{"role": "user", "content": fits}]) == 20
    with client_for(server) as client:
        assert ask(client, fits).choices[0].message.content == expected_echo(fits)
        with pytest.raises(openai.BadRequestError) as refused:
            ask(client, fits + "x")
    assert refused.value.code == "context_length_exceeded"
    assert "21 tokens" in refused.value.message


def test_streaming_is_refused_with_a_clear_message(serve: Serve) -> None:
    server = serve()
    with client_for(server) as client, pytest.raises(openai.BadRequestError) as refused:
        ask(client, "hi", stream=True)
    assert "stream" in refused.value.message


def test_a_raising_responder_answers_500(serve: Serve) -> None:
    def broken(request: ChatRequest) -> str:
        raise KeyError("nope")

    server = serve(responder=broken)
    with client_for(server) as client, pytest.raises(openai.InternalServerError) as refused:
        ask(client, "hi")
    assert refused.value.code == "responder_error"


def test_errors_and_unknown_urls_have_openai_error_bodies(serve: Serve) -> None:
    server = serve()
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=server.url) as http:
        malformed = http.post("/chat/completions", content=b"{not json", headers=headers)
        unknown = http.get("/embeddings", headers=headers)
    for response, status in [(malformed, 400), (unknown, 404)]:
        assert response.status_code == status
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}


# -- fault injection ----------------------------------------------------------------------------


def test_injected_429_is_retried_by_the_client_after_retry_after(serve: Serve) -> None:
    server = serve()
    server.fail_next(1, 429, retry_after_s=0.05)
    with client_for(server, max_retries=2) as client:
        reply = ask(client, "hi")
    assert reply.choices[0].message.content == expected_echo("hi")
    stats = server.stats()
    assert (stats.requests, stats.ok, stats.refused) == (2, 1, {429: 1})
    first, retry = server.requests
    assert first.messages == retry.messages
    assert retry.headers["x-stainless-retry-count"] == "1"


def test_injected_429_carries_retry_after_and_openai_wording(serve: Serve) -> None:
    server = serve()
    server.fail_next(1, 429, retry_after_s=2)
    with client_for(server) as client, pytest.raises(openai.RateLimitError) as refused:
        ask(client, "hi")
    assert refused.value.response.headers["retry-after"] == "2"
    assert refused.value.code == "rate_limit_exceeded"


def test_injected_5xx_fail_exactly_the_next_n_requests(serve: Serve) -> None:
    server = serve()
    server.fail_next(1, 500)
    server.fail_next(1, 503)
    with client_for(server) as client:
        statuses = []
        for _ in range(2):
            with pytest.raises(openai.InternalServerError) as refused:
                ask(client, "hi")
            statuses.append(refused.value.status_code)
        assert ask(client, "hi").choices[0].message.content == expected_echo("hi")
    assert statuses == [500, 503]
    assert server.stats().refused == {500: 1, 503: 1}
    assert server.stats().ok == 1


def test_a_stalled_request_times_the_client_out_and_stop_cuts_it_short(serve: Serve) -> None:
    server = serve()
    server.stall_next(1, 60)
    with client_for(server, timeout=0.3) as client:
        with pytest.raises(openai.APITimeoutError):
            ask(client, "hi")
        assert server.stats().in_flight == 1  # the server is still holding it
        assert ask(client, "hi").choices[0].message.content == expected_echo("hi")
    server.stop()
    stats = server.stats()
    assert stats.in_flight == 0
    assert stats.refused == {503: 1}


def test_fault_arguments_are_validated() -> None:
    server = FakeLMServer()
    with pytest.raises(ValueError):
        server.fail_next(1, 200)
    with pytest.raises(ValueError):
        server.stall_next(-1, 1.0)
    with pytest.raises(ValueError):
        server.latency_s = -0.1
    with pytest.raises(RuntimeError):
        _ = server.url


# -- concurrency and measurement ----------------------------------------------------------------


async def _ask_many(url: str, n: int, headers: dict[str, str] | None = None) -> list[str]:
    async with AsyncOpenAI(
        base_url=url, api_key=KEY, max_retries=0, default_headers=headers
    ) as client:
        replies = await asyncio.gather(
            *(
                client.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": f"q{i}"}]
                )
                for i in range(n)
            )
        )
    return [r.choices[0].message.content or "" for r in replies]


def test_64_concurrent_async_requests_are_served_together(serve: Serve) -> None:
    server = serve(latency_s=0.1)
    replies = asyncio.run(_ask_many(server.url, 64))
    assert replies == [expected_echo(f"q{i}") for i in range(64)]
    stats = server.stats()
    assert stats.ok == 64
    assert stats.max_in_flight >= 32
    assert stats.in_flight == 0
    assert len(stats.accepted_arrivals) == 64
    assert stats.accepted_between(stats.arrivals[0], stats.arrivals[-1] + 1) == 64


def test_concurrency_is_also_measured_per_tenant(serve: Serve) -> None:
    server = serve(latency_s=0.2)

    async def both() -> None:
        await asyncio.gather(
            _ask_many(server.url, 8, {"X-RLM-Tenant": "acme"}),
            _ask_many(server.url, 4, {"X-RLM-Tenant": "globex"}),
            _ask_many(server.url, 4),
        )

    asyncio.run(both())
    stats = server.stats()
    assert set(stats.tenants) == {"acme", "globex"}
    acme, globex = stats.tenants["acme"], stats.tenants["globex"]
    assert (acme.requests, globex.requests) == (8, 4)
    assert 1 <= acme.max_in_flight <= 8 and 1 <= globex.max_in_flight <= 4
    assert acme.in_flight == globex.in_flight == 0
    assert stats.max_in_flight >= max(acme.max_in_flight, globex.max_in_flight)


def test_reset_stats_forgets_measurements_but_not_queued_faults(serve: Serve) -> None:
    server = serve()
    with client_for(server) as client:
        ask(client, "hi")
        server.fail_next(1, 503)
        server.reset_stats()
        assert server.stats() == ServerStats(0, 0, {}, 0, 0, (), (), {})
        assert server.requests == []
        with pytest.raises(openai.InternalServerError):
            ask(client, "hi")
    assert server.stats().refused == {503: 1}


def test_latency_is_settable_while_running(serve: Serve) -> None:
    server = serve()
    server.latency_s = 0.25
    assert server.latency_s == 0.25
    server.stall_next(0, 1.0)  # a no-op
    with client_for(server, timeout=0.1) as client, pytest.raises(openai.APITimeoutError):
        ask(client, "hi")


def test_window_counts_over_arrival_times() -> None:
    stats = ServerStats(5, 5, {}, 0, 3, (), (0.0, 0.1, 0.5, 1.0, 1.05), {})
    assert stats.accepted_between(0.0, 0.5) == 2
    assert stats.accepted_between(0.5, 2.0) == 3
    assert stats.max_accepted_in_window(0.5) == 2
    assert stats.max_accepted_in_window(0.51) == 3
    assert stats.max_accepted_in_window(10) == 5


# -- as a separate process ----------------------------------------------------------------------


def test_runs_as_a_separate_process_until_sigterm(tmp_path: Path) -> None:
    root = Path(rlm.__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "rlm.testing.openai_server", "--port", "0", "--latency-ms", "10"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "stderr.txt").open("w"),
        text=True,
    )
    try:
        lines: queue.Queue[str] = queue.Queue()
        assert process.stdout is not None
        stdout = process.stdout
        threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
        url = lines.get(timeout=30).strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        with OpenAI(base_url=url, api_key=KEY, max_retries=0, timeout=10) as client:
            reply = ask(client, "from afar")
        assert reply.choices[0].message.content == expected_echo("from afar")
        process.terminate()
        assert process.wait(timeout=15) == 0
        assert (tmp_path / "stderr.txt").read_text() == ""  # no warnings, no tracebacks
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
