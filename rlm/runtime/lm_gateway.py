"""LM gateways: one actor per provider, where that provider's limits hold.

A gateway owns the provider's HTTP client (:class:`~rlm.lm.chat_http.ChatClient`: the request
the ``openai`` client sends, and its exceptions), its concurrency slots (shared fairly by
tenants) and its requests/tokens-per-minute pacer, so the limits hold across every task, Serve
replica and node: every LM call of the service to that provider passes through it.

Retries: the client does not retry; the gateway retries 429, 5xx, connection errors and
timeouts itself — honouring ``Retry-After`` (seconds or an HTTP date), else exponential
backoff with full jitter — because every attempt must pass the pacer again (a retry the
provider sees is a request it counts). Errors become :class:`RLMError` naming the
provider and model: the caller's mistakes (a prompt over the context window, a malformed
request) are ``INVALID_INPUT``; the provider's (a rejected key, an unknown model, 5xx after
retries, unreachable) are ``INTERNAL_ERROR`` with ``providerStatus``.

Batches: the broker sends the calls it has ready at once in one message
(:meth:`LMGateway.complete_many`, a streaming generator), and gets their outcomes back in
groups, each group what finished together; one message each way per group instead of per
call is what the CPU of two busy processes is spent on otherwise. Every call of a batch is
still sent, limited, retried and answered on its own, and :meth:`LMGateway.cancel` stops one
call by its key.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import logging
import random
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any

import openai
import orjson
import ray

from rlm.errors import InternalError, InvalidInput, RLMError
from rlm.lm.chat_http import ChatClient
from rlm.lm.limits import FairSlots, RatePacer
from rlm.lm.settings import ProviderSettings

__all__ = ["GatewayActor", "LMGateway", "Outcome"]

log = logging.getLogger(__name__)

#: Keys of cancels that arrived before their call (remembered, a bounded number).
_EARLY_CANCELS = 10_000

#: What a batched call ends as: ``(key, "ok", answer)``, ``(key, "err", RLMError)`` or
#: ``(key, "cancelled", None)``.
Outcome = tuple[int, str, Any]

_RETRYABLE = (
    openai.RateLimitError,
    openai.InternalServerError,
    openai.APIConnectionError,  # includes APITimeoutError
)


def _retry_after(err: Exception) -> float | None:
    """Seconds the provider asked us to wait (``Retry-After``), if it said."""
    response = getattr(err, "response", None)
    if response is None:
        return None
    value = response.headers.get("retry-after-ms")
    if value is not None:
        try:
            return max(0.0, float(value) / 1000.0)
        except ValueError:
            pass
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        if parsed is None:
            return None
        return max(0.0, parsed.timestamp() - time.time())


class LMGateway:
    """Sends one provider's chat completions under its limits; wrapped as :data:`GatewayActor`.

    Args:
        provider: The provider's settings (its key included: it never leaves this actor).
        max_backoff_s: The longest wait between retries.
    """

    def __init__(self, provider: ProviderSettings, max_backoff_s: float = 30.0) -> None:
        self._p = provider
        self._client: ChatClient | None = None
        self._slots = FairSlots(provider.max_concurrency, provider.max_inflight_per_tenant)
        self._pacer = RatePacer(provider.requests_per_minute, provider.tokens_per_minute)
        self._max_backoff_s = max_backoff_s
        self._sent = 0
        self._answered = 0
        self._retried = 0
        self._failed = 0
        self._batches = 0
        self._replies = 0
        self._running: dict[int, asyncio.Task[dict[str, Any]]] = {}
        self._cancelled_early: OrderedDict[int, None] = OrderedDict()

    def _http(self) -> ChatClient:
        """The provider's HTTP client (its connections open on first use, on this loop)."""
        if self._client is None:
            key = self._p.api_key.get_secret_value() if self._p.api_key is not None else "unset"
            self._client = ChatClient(
                self._p.base_url,
                key,
                timeout_s=self._p.timeout_s,
                max_connections=self._p.max_concurrency,
            )
        return self._client

    async def close(self) -> None:
        """Close the provider's client (its connections); a later call opens a new one."""
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    def stats(self) -> dict[str, Any]:
        """Counters: requests sent (attempts), answered, retried, failed; batches received
        and the messages that answered them; slots in use."""
        return {
            "provider": self._p.name,
            "sent": self._sent,
            "answered": self._answered,
            "retried": self._retried,
            "failed": self._failed,
            "batches": self._batches,
            "replies": self._replies,
            "inflight": self._slots.inflight,
            "maxInflight": self._slots.max_inflight,
            "maxInflightByTenant": dict(self._slots.max_by_tenant),
        }

    async def complete(self, tenant: str, call: dict[str, Any]) -> dict[str, Any]:
        """Send one chat completion, retrying what can be retried.

        Args:
            tenant: Whose call it is (fair slots, per-tenant cap).
            call: ``{"model", "messages", "maxTokens", "temperature", "tokens"}`` where
                ``tokens`` is the worst case counted against tokens per minute.

        Returns:
            ``{"text", "model", "finishReason", "inputTokens", "outputTokens", "latencyS",
            "usage"}`` (``usage`` false when the provider reported none).

        Raises:
            RLMError: see the module docstring.
        """
        model = str(call["model"])
        attempt = 0
        t0 = time.perf_counter()
        while True:
            await self._slots.acquire(tenant)
            try:
                await self._pacer.wait_turn(int(call["tokens"]))
                self._sent += 1
                body = await self._http().create(
                    {
                        "model": model,
                        "messages": call["messages"],
                        "max_tokens": int(call["maxTokens"]),
                        "temperature": float(call["temperature"]),
                    }
                )
            except _RETRYABLE as err:
                if attempt >= self._p.max_retries:
                    self._failed += 1
                    raise self._error(err, model) from None
                wait = _retry_after(err)
                if wait is None:
                    wait = random.uniform(0, min(self._max_backoff_s, 0.5 * 2**attempt))
                self._retried += 1
                attempt += 1
            except openai.APIError as err:
                self._failed += 1
                raise self._error(err, model) from None
            else:
                try:
                    reply = self._reply(body, model, time.perf_counter() - t0)
                except RLMError:
                    self._failed += 1
                    raise
                self._answered += 1
                return reply
            finally:
                self._slots.release(tenant)
            await asyncio.sleep(min(wait, self._max_backoff_s))

    async def complete_many(
        self, calls: list[tuple[int, str, dict[str, Any]]]
    ) -> AsyncIterator[list[Outcome]]:
        """Send several calls, each as :meth:`complete` does; yield outcomes as calls finish.

        The gateway actor runs this as a streaming generator: each list it yields travels
        back as one message, holding every call that finished since the last one.

        Args:
            calls: ``(key, tenant, call)`` each; ``key`` (unique per caller) names the call
                to :meth:`cancel` and in its outcome.

        Yields:
            Lists of :data:`Outcome`; every call of the batch is in exactly one of them.
        """
        self._batches += 1
        finished: list[Outcome] = []
        wake = asyncio.Event()
        tasks: list[asyncio.Task[dict[str, Any]]] = []
        for key, tenant, call in calls:
            if key in self._cancelled_early:
                del self._cancelled_early[key]
                finished.append((key, "cancelled", None))
                continue
            task = asyncio.get_running_loop().create_task(self.complete(tenant, call))
            self._running[key] = task
            task.add_done_callback(functools.partial(self._finished, key, finished, wake))
            tasks.append(task)
        left = len(calls)
        try:
            while left:
                if not finished:
                    await wake.wait()
                # Answers read in the same pass of the loop finish over the next few passes:
                # gather them into this message while each pass still adds some.
                while True:
                    seen = len(finished)
                    await asyncio.sleep(0)
                    if len(finished) == seen:
                        break
                wake.clear()
                out = finished[:]
                finished.clear()
                left -= len(out)
                self._replies += 1
                yield out
        finally:
            for task in tasks:  # the caller went away or cancelled the whole batch
                task.cancel()

    def _finished(
        self,
        key: int,
        finished: list[Outcome],
        wake: asyncio.Event,
        task: asyncio.Task[dict[str, Any]],
    ) -> None:
        self._running.pop(key, None)
        if task.cancelled():
            finished.append((key, "cancelled", None))
        elif (err := task.exception()) is None:
            finished.append((key, "ok", task.result()))
        elif isinstance(err, RLMError):
            finished.append((key, "err", err))
        else:  # a bug of ours, not the provider's answer
            log.error("LM gateway %r: a call failed", self._p.name, exc_info=err)
            failure = InternalError(
                f"the gateway of LM provider {self._p.name!r} failed: {type(err).__name__}",
                {"provider": self._p.name},
            )
            finished.append((key, "err", failure))
        wake.set()

    async def cancel(self, keys: list[int]) -> None:
        """Stop the batched calls named by ``keys``: each ends ``cancelled``, charged nothing.

        A key not (yet) running is remembered, so a cancel that overtakes its batch still
        stops the call; a key that has finished already is a no-op.
        """
        for key in keys:
            task = self._running.get(key)
            if task is not None:
                task.cancel()
                continue
            self._cancelled_early[key] = None
            while len(self._cancelled_early) > _EARLY_CANCELS:
                self._cancelled_early.popitem(last=False)

    def _reply(self, body: bytes, model: str, latency_s: float) -> dict[str, Any]:
        """The answer of a 200, read from the provider's JSON.

        Raises:
            InternalError: the body is not a chat completion.
        """
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            raise InternalError(
                f"LM provider {self._p.name!r} (model {model!r}) answered with a body that "
                "is not a chat completion",
                {"provider": self._p.name, "model": model, "reason": "bad answer"},
            )
        choices = data.get("choices")
        choice = choices[0] if isinstance(choices, list) and choices else {}
        choice = choice if isinstance(choice, dict) else {}
        message = choice.get("message")
        text = message.get("content") if isinstance(message, dict) else None
        usage = data.get("usage")
        usage = usage if isinstance(usage, dict) else None
        return {
            "text": text if isinstance(text, str) else "",
            "model": str(data.get("model") or model),
            "finishReason": choice.get("finish_reason"),
            "inputTokens": int(usage.get("prompt_tokens") or 0) if usage is not None else 0,
            "outputTokens": int(usage.get("completion_tokens") or 0) if usage is not None else 0,
            "latencyS": latency_s,
            "usage": usage is not None,
        }

    def _error(self, err: Exception, model: str) -> RLMError:
        who = f"LM provider {self._p.name!r} (model {model!r})"
        details: dict[str, Any] = {"provider": self._p.name, "model": model}
        if isinstance(err, openai.APITimeoutError):
            details["reason"] = "timeout"
            return InternalError(
                f"{who} did not answer within {self._p.timeout_s} s "
                f"({self._p.max_retries + 1} attempt(s))",
                details,
            )
        if isinstance(err, openai.APIConnectionError):
            details["reason"] = "unreachable"
            return InternalError(f"{who} is unreachable at {self._p.base_url}", details)
        status = getattr(err, "status_code", None)
        details["providerStatus"] = status
        message = _provider_message(err)
        if isinstance(err, openai.AuthenticationError | openai.PermissionDeniedError):
            return InternalError(f"{who} refused the service's API key ({status})", details)
        if isinstance(err, openai.NotFoundError):
            return InternalError(
                f"{who}: the provider does not know this model ({status})", details
            )
        if isinstance(err, openai.BadRequestError | openai.UnprocessableEntityError):
            code = getattr(err, "code", None)
            if code == "context_length_exceeded":
                details["reason"] = "context_length_exceeded"
                return InvalidInput(
                    f"{who}: the prompt is over the model's context window", details
                )
            return InvalidInput(f"{who} refused the request ({status}): {message}", details)
        if isinstance(err, openai.RateLimitError):
            return InternalError(f"{who} kept refusing with 429 after retries", details)
        return InternalError(f"{who} failed ({status}): {message}", details)


def _provider_message(err: Exception) -> str:
    body = getattr(err, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])[:500]
    return str(getattr(err, "message", err))[:500]


#: The gateway as a Ray actor: async, so one process holds thousands of waiting calls.
GatewayActor = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0, max_concurrency=100_000)(
    LMGateway
)
