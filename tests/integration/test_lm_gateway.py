"""The LM gateway and the broker's batches, on an event loop of the test's own, against
FakeLMServer.

No Ray runs here: :class:`LMGateway` is the plain class the gateway actor wraps, and the broker
is given a handle that runs such a gateway on the same loop (what the actor does over Ray:
a batch in, groups of outcomes back as a stream, cancels by key). So what the gateway does
with the provider's answers (errors, retries, limits) and what the broker charges for each
call of a batch are tested directly.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from rlm.errors import InternalError, InvalidInput
from rlm.lm.budget import Budget
from rlm.lm.calls import LMRequest
from rlm.lm.settings import ProviderSettings
from rlm.runtime.lm_broker import CallStopped, LMBroker
from rlm.runtime.lm_gateway import LMGateway, Outcome
from rlm.testing import FakeLMServer, by_prompt
from tests.support import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLMServer]:
    with FakeLMServer(responder=by_prompt(lambda prompt: "R:" + prompt)) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _fresh(server: FakeLMServer) -> None:
    # A request an earlier test dropped is still waited out by the server: let it end, so
    # the in-flight figures are this test's alone.
    wait_until(lambda: server.stats().in_flight == 0, 10, "the server has nothing in flight")
    server.latency_s = 0.0
    server.reset_stats()


def _provider(url: str, **extra: Any) -> ProviderSettings:
    return ProviderSettings(base_url=url, api_key="test-key", model="fake-model", **extra)


def _call(text: str, tokens: int = 100) -> dict[str, Any]:
    return {
        "model": "fake-model",
        "messages": [{"role": "user", "content": text}],
        "maxTokens": 64,
        "temperature": 0.0,
        "tokens": tokens,
    }


def _on_loop(gateway: LMGateway, body: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``body`` on a new event loop, then close the gateway's client."""

    async def main() -> Any:
        try:
            return await body()
        finally:
            await gateway.close()

    return asyncio.run(main())


async def _drain(stream: AsyncIterator[list[Outcome]]) -> list[list[Outcome]]:
    return [group async for group in stream]


async def _until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout:g}s, but never: {what}", pytrace=False)
        await asyncio.sleep(0.01)


# -- errors -----------------------------------------------------------------------------------


def test_a_refused_connection_is_unreachable_not_a_timeout() -> None:
    gateway = LMGateway(_provider("http://127.0.0.1:9/v1", max_retries=0, timeout_s=5))
    with pytest.raises(InternalError) as info:
        _on_loop(gateway, lambda: gateway.complete("t", _call("hello")))
    assert info.value.details["reason"] == "unreachable"
    assert "unreachable" in info.value.message


def test_a_stalled_answer_is_a_timeout(server: FakeLMServer) -> None:
    server.stall_next(1, 3.0)
    gateway = LMGateway(_provider(server.url, max_retries=0, timeout_s=0.3))
    with pytest.raises(InternalError) as info:
        _on_loop(gateway, lambda: gateway.complete("t", _call("stall")))
    assert info.value.details["reason"] == "timeout"
    assert "did not answer within 0.3 s" in info.value.message


def test_an_answer_is_read_from_the_providers_json(server: FakeLMServer) -> None:
    gateway = LMGateway(_provider(server.url))
    answer = _on_loop(gateway, lambda: gateway.complete("t", _call("json")))
    assert answer["text"] == "R:json" and answer["finishReason"] == "stop"
    assert answer["usage"] is True and answer["inputTokens"] > 0 and answer["outputTokens"] > 0
    assert answer["model"] == "fake-model"
    read = gateway._reply(b'{"choices": [], "model": null}', "m", 0.5)
    assert (read["text"], read["model"], read["usage"], read["inputTokens"]) == ("", "m", False, 0)
    for body in (b"<html>busy</html>", b"[1, 2]"):
        with pytest.raises(InternalError, match="not a chat completion"):
            gateway._reply(body, "m", 0.5)


# -- batches at the gateway -------------------------------------------------------------------


def test_a_batch_answers_every_call_exactly_once(server: FakeLMServer) -> None:
    server.latency_s = 0.02
    gateway = LMGateway(_provider(server.url, max_concurrency=8))
    calls = [(key, "t", _call(f"p{key}")) for key in range(40)]
    groups = _on_loop(gateway, lambda: _drain(gateway.complete_many(calls)))
    outcomes = [o for group in groups for o in group]
    assert sorted(key for key, _, _ in outcomes) == list(range(40))  # each once
    assert all(kind == "ok" for _, kind, _ in outcomes)
    assert all(answer["text"] == f"R:p{key}" for key, _, answer in outcomes)
    assert server.stats().requests == 40
    stats = gateway.stats()
    assert stats["batches"] == 1 and stats["answered"] == 40
    # Calls that finish together travel together: fewer messages than calls.
    assert stats["replies"] == len(groups) and 1 <= len(groups) < 40


def test_a_call_cancelled_inside_a_batch_ends_cancelled_and_the_others_are_answered(
    server: FakeLMServer,
) -> None:
    server.latency_s = 0.5
    gateway = LMGateway(_provider(server.url))
    calls = [(key, "t", _call(f"c{key}")) for key in range(4)]

    async def body() -> list[Outcome]:
        stream = gateway.complete_many(calls)
        drained = asyncio.ensure_future(_drain(stream))
        await _until(lambda: server.stats().requests == 4, 10, "the four requests arrive")
        await gateway.cancel([2])
        return [o for group in await drained for o in group]

    outcomes = {key: (kind, value) for key, kind, value in _on_loop(gateway, body)}
    assert outcomes[2] == ("cancelled", None)
    assert {key for key, (kind, _) in outcomes.items() if kind == "ok"} == {0, 1, 3}
    stats = gateway.stats()
    assert stats["answered"] == 3 and stats["inflight"] == 0


def test_a_cancel_that_overtakes_its_batch_still_stops_the_call(server: FakeLMServer) -> None:
    gateway = LMGateway(_provider(server.url))

    async def body() -> list[Outcome]:
        await gateway.cancel([7])
        groups = await _drain(gateway.complete_many([(6, "t", _call("a")), (7, "t", _call("b"))]))
        return [o for group in groups for o in group]

    outcomes = {key: kind for key, kind, _ in _on_loop(gateway, body)}
    assert outcomes == {6: "ok", 7: "cancelled"}
    assert server.stats().requests == 1


def test_each_call_of_a_batch_is_retried_on_its_own(server: FakeLMServer) -> None:
    server.fail_next(2, status=500)
    gateway = LMGateway(_provider(server.url, max_retries=2), max_backoff_s=0.05)
    calls = [(key, "t", _call(f"r{key}")) for key in range(5)]
    groups = _on_loop(gateway, lambda: _drain(gateway.complete_many(calls)))
    outcomes = [o for group in groups for o in group]
    assert sorted((key, kind) for key, kind, _ in outcomes) == [(k, "ok") for k in range(5)]
    stats = gateway.stats()
    assert stats["retried"] == 2 and stats["sent"] == 7 and stats["answered"] == 5
    assert server.stats().requests == 7 and server.stats().refused == {500: 2}


def test_a_failed_call_inside_a_batch_fails_alone(server: FakeLMServer) -> None:
    server.fail_next(1, status=500)
    gateway = LMGateway(_provider(server.url, max_retries=0))
    calls = [(key, "t", _call(f"f{key}")) for key in range(3)]
    server.latency_s = 0.05  # the failure is answered first, the others after
    groups = _on_loop(gateway, lambda: _drain(gateway.complete_many(calls)))
    kinds = sorted(kind for group in groups for _, kind, _ in group)
    assert kinds == ["err", "ok", "ok"]
    failed = next(value for group in groups for _, kind, value in group if kind == "err")
    assert isinstance(failed, InternalError) and failed.details["providerStatus"] == 500


def test_a_batch_holds_the_providers_concurrency(server: FakeLMServer) -> None:
    server.latency_s = 0.05
    gateway = LMGateway(_provider(server.url, max_concurrency=2))
    calls = [(key, "t", _call(f"l{key}")) for key in range(8)]
    _on_loop(gateway, lambda: _drain(gateway.complete_many(calls)))
    assert server.stats().max_in_flight == 2
    assert gateway.stats()["maxInflight"] == 2


# -- batches through the broker ---------------------------------------------------------------


class _Remote:
    """An actor method as the broker calls it (``.options(...).remote(...)``), run here."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self._fn = fn

    def options(self, **_: Any) -> _Remote:
        return self

    def remote(self, *args: Any) -> Any:
        return self._fn(*args)


def _ready(value: Any) -> asyncio.Future[Any]:
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    future.set_result(value)
    return future


class _InProcessGateway:
    """A gateway actor's handle, with the gateway on the test's loop: a batch answers as a
    stream of awaitable groups, as the actor's streaming generator does."""

    def __init__(
        self, gateway: LMGateway, fail_after: int | None = None, unreachable: bool = False
    ) -> None:
        self.gateway = gateway
        self._fail_after = fail_after
        self._cancels: set[asyncio.Task[None]] = set()
        self.complete_many = _Remote(self._unreachable if unreachable else self._stream)
        self.cancel = _Remote(self._cancel)
        self.stats = _Remote(lambda: _ready(gateway.stats()))

    async def _stream(self, calls: list[tuple[int, str, dict[str, Any]]]) -> AsyncIterator[Any]:
        sent = 0
        async for group in self.gateway.complete_many(calls):
            if self._fail_after is not None and sent >= self._fail_after:
                raise RuntimeError("the gateway broke")
            sent += 1
            yield _ready(group)

    def _unreachable(self, calls: list[Any]) -> Any:
        raise RuntimeError("no route to the gateway")

    def _cancel(self, keys: list[int]) -> None:
        task = asyncio.get_running_loop().create_task(self.gateway.cancel(keys))
        self._cancels.add(task)
        task.add_done_callback(self._cancels.discard)


class _Quota:
    """The user's token quota as the broker sees it: what was held, settled and released."""

    def __init__(self) -> None:
        self.held: dict[int, int] = {}
        self.settled: list[tuple[int, int]] = []
        self.released = 0
        self._next = 0

    def reserve(self, tokens: int) -> int:
        self._next += 1
        self.held[self._next] = tokens
        return self._next

    def settle(self, hold: Any, input_tokens: int, output_tokens: int, cost: float) -> None:
        del self.held[hold]
        self.settled.append((input_tokens, output_tokens))

    def release(self, hold: Any) -> None:
        del self.held[hold]
        self.released += 1

    def extra_call(self, calls: int = 1) -> None:
        pass


def _broker(url: str, **provider: Any) -> tuple[LMBroker, list[_InProcessGateway]]:
    fail_after = provider.pop("fail_after", None)
    unreachable = provider.pop("unreachable", False)
    made: list[_InProcessGateway] = []

    def factory(p: ProviderSettings) -> _InProcessGateway:
        made.append(_InProcessGateway(LMGateway(p), fail_after, unreachable))
        return made[-1]

    settings = _provider(url, input_price_per_mtok=1.0, output_price_per_mtok=2.0, **provider)
    return LMBroker({"default": settings}, gateway_factory=factory), made


async def _close(gateways: list[_InProcessGateway]) -> None:
    for g in gateways:
        await g.gateway.close()


def _ask(text: str) -> LMRequest:
    return LMRequest.chat(text, max_tokens=64)


async def _outcome(call: Awaitable[Any]) -> Any:
    try:
        return await call
    except (CallStopped, InternalError) as err:
        return err


def test_the_broker_sends_calls_of_one_pass_in_one_batch_and_charges_each(
    server: FakeLMServer,
) -> None:
    broker, gateways = _broker(server.url)
    quota = _Quota()

    async def body() -> list[Any]:
        broker.open("task", tenant="t", quota=quota, memo=False)
        try:
            return await asyncio.gather(*(broker.call("task", _ask(f"b{i}")) for i in range(10)))
        finally:
            await _close(gateways)

    replies = asyncio.run(body())
    assert [r.text for r in replies] == [f"R:b{i}" for i in range(10)]
    assert [g.gateway.stats()["batches"] for g in gateways] == [1]
    usage = broker.usage("task")
    assert usage is not None and usage.lm_calls == 10
    assert usage.input_tokens == sum(r.input_tokens for r in replies) > 0
    assert len(quota.settled) == 10 and not quota.held and quota.released == 0


def test_calls_of_a_batch_stopped_in_flight_are_cancelled_and_charged_nothing(
    server: FakeLMServer,
) -> None:
    server.latency_s = 1.0
    broker, gateways = _broker(server.url, gateway_shards=2, max_concurrency=4)
    quota = _Quota()

    async def body() -> list[Any]:
        broker.open("task", tenant="t", quota=quota, memo=False, budget=Budget(tokens=10**6))
        calls = [
            asyncio.ensure_future(_outcome(broker.call("task", _ask(f"s{i}")))) for i in range(6)
        ]
        try:
            await _until(lambda: server.stats().requests == 4, 10, "four requests in flight")
            await broker.stop("task", wait_s=5.0)
            return await asyncio.gather(*calls)
        finally:
            await _close(gateways)

    outcomes = asyncio.run(body())
    assert all(isinstance(o, CallStopped) for o in outcomes)
    usage = broker.usage("task")
    assert usage is not None and usage.lm_calls == 0 and usage.tokens == 0
    assert quota.settled == [] and not quota.held and quota.released == 6
    assert server.stats().requests == 4  # the two beyond the concurrency never left
    assert sum(g.gateway.stats()["answered"] for g in gateways) == 0


def test_a_gateway_that_breaks_mid_batch_fails_the_calls_it_did_not_answer(
    server: FakeLMServer,
) -> None:
    broker, gateways = _broker(server.url, fail_after=0)
    quota = _Quota()

    async def body() -> list[Any]:
        broker.open("task", tenant="t", quota=quota, memo=False)
        try:
            return await asyncio.gather(
                *(_outcome(broker.call("task", _ask(f"x{i}"))) for i in range(3))
            )
        finally:
            await _close(gateways)

    outcomes = asyncio.run(body())
    assert all(isinstance(o, InternalError) for o in outcomes)
    assert all("the gateway of LM provider 'default' failed" in o.message for o in outcomes)
    usage = broker.usage("task")
    assert usage is not None and usage.lm_calls == 0
    assert quota.settled == [] and not quota.held and quota.released == 3


def test_a_batch_that_cannot_be_sent_fails_its_calls_and_charges_nothing(
    server: FakeLMServer,
) -> None:
    broker, gateways = _broker(server.url, unreachable=True)
    quota = _Quota()

    async def body() -> list[Any]:
        broker.open("task", tenant="t", quota=quota, memo=False)
        try:
            return await asyncio.gather(
                *(_outcome(broker.call("task", _ask(f"n{i}"))) for i in range(3))
            )
        finally:
            await _close(gateways)

    outcomes = asyncio.run(body())
    assert all(isinstance(o, InternalError) for o in outcomes)
    assert all("failed: RuntimeError" in o.message for o in outcomes)
    assert quota.released == 3 and not quota.held
    # Nothing reached a gateway (the server's own count may still see a request an earlier
    # test dropped, arriving late).
    assert [g.gateway.stats()["batches"] for g in gateways] == [0]


def test_an_rlm_sub_call_batch_goes_in_one_batch_and_answers_in_order(
    server: FakeLMServer,
) -> None:
    broker, gateways = _broker(server.url)
    quota = _Quota()
    requests = [_ask(f"c{i}") for i in range(8)]
    requests[3] = LMRequest.chat("refused", max_tokens=64, provider="nowhere")

    async def body() -> list[Any]:
        broker.open("task", tenant="t", quota=quota, memo=False)
        try:
            return await broker.call_batch("task", requests)
        finally:
            await _close(gateways)

    outcomes = asyncio.run(body())
    assert isinstance(outcomes[3], InvalidInput)
    assert [o.text for i, o in enumerate(outcomes) if i != 3] == [  # type: ignore[union-attr]
        f"R:c{i}" for i in range(8) if i != 3
    ]
    assert [g.gateway.stats()["batches"] for g in gateways] == [1]
    usage = broker.usage("task")
    assert usage is not None and usage.lm_calls == 7
    assert len(quota.settled) == 7 and not quota.held and quota.released == 0


def test_an_rlm_sub_call_batch_stopped_in_flight_is_charged_nothing(
    server: FakeLMServer,
) -> None:
    server.latency_s = 1.0
    broker, gateways = _broker(server.url, gateway_shards=2, max_concurrency=4)
    quota = _Quota()

    async def body() -> list[Any]:
        broker.open("task", tenant="t", quota=quota, memo=False, budget=Budget(tokens=10**6))
        batch = asyncio.ensure_future(broker.call_batch("task", [_ask(f"z{i}") for i in range(6)]))
        try:
            await _until(lambda: server.stats().requests == 4, 10, "four requests in flight")
            await broker.stop("task", wait_s=5.0)
            return await batch
        finally:
            await _close(gateways)

    outcomes = asyncio.run(body())
    assert all(isinstance(o, CallStopped) for o in outcomes)
    usage = broker.usage("task")
    assert usage is not None and usage.lm_calls == 0 and usage.tokens == 0
    assert quota.settled == [] and not quota.held and quota.released == 6
    assert server.stats().requests == 4
