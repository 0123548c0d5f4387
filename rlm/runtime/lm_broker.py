"""The LM broker: the core's part that admits, sends and accounts every LM call of a task.

An LM operation's call reaches the core as ``lm_call(task_id, request)`` from the agent that
runs it. The broker then, in order:

1. refuses calls of a task that has ended (cancel, timeout, failure): no call is sent after;
2. resolves the provider and model (``INVALID_INPUT`` for ones not configured);
3. answers an identical temperature-0 call from the memo cache (free, counted as cached);
4. reserves the call's worst case (prompt estimate + ``max_tokens``, priced) on the task's
   budget and on the user's daily token quota, before anything is sent — a call that would
   cross either is not sent, and the task fails with ``QUOTA_EXCEEDED``;
5. sends it through the provider's gateway actor (created on first use), keeping the call's
   reference so a cancel can stop it in flight (``ray.cancel``: the HTTP request is dropped,
   not awaited);
6. settles the reservations to the provider's reported usage, adds it to the task's usage and
   memoises the answer.

A call that was never answered (refused, failed, cancelled) charges nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import ray

from rlm.errors import InternalError, InvalidInput, RLMError, error_from_payload
from rlm.lm.budget import Budget, BudgetHold, TaskBudget
from rlm.lm.calls import LMReply, LMRequest, LMUsage, cost_usd, estimate_tokens, memo_key
from rlm.lm.memo import MemoStore
from rlm.lm.settings import ProviderSettings, resolve_provider
from rlm.runtime.lm_gateway import GatewayActor

__all__ = ["CallStopped", "LMBroker", "TokenQuota"]

log = logging.getLogger(__name__)


class CallStopped(Exception):  # a signal: the task ended, so the call is not (or no longer) sent
    """The call's task has ended."""


class TokenQuota(Protocol):
    """Who is charged for a task's tokens: the quota ledger's token holds, bound to a task."""

    def reserve(self, tokens: int) -> Any:
        """Hold ``tokens`` on the user's daily token quota, or raise ``QuotaExceeded``."""
        ...

    def settle(self, hold: Any, input_tokens: int, output_tokens: int, cost: float) -> None:
        """Replace the hold by what the call used."""
        ...

    def release(self, hold: Any) -> None:
        """Drop the hold; nothing is charged."""
        ...

    def extra_call(self, calls: int = 1) -> None:
        """Hold ``calls`` more agent calls (requests the plan did not count), or raise."""
        ...


@dataclass
class _Account:
    budget: TaskBudget
    tenant: str
    memo: bool
    quota: TokenQuota | None
    usage: LMUsage = field(default_factory=LMUsage)
    inflight: set[Any] = field(default_factory=set)
    stopped: bool = False
    on_reply: Callable[[LMReply, LMRequest], None] | None = None


@dataclass(frozen=True)
class _Admitted:
    """A call admitted and reserved, ready to send."""

    request: LMRequest
    provider: ProviderSettings
    model: str
    call: dict[str, Any]
    prompt_tokens: int
    max_tokens: int
    worst_cost: float
    hold: BudgetHold
    quota_hold: Any
    memo_key: str | None


class LMBroker:
    """Admits, sends and accounts LM calls; composed by the core actor.

    Args:
        providers: The configured providers by name (``default`` is used when a call names none).
        memo: The memo cache (``None``: no memoisation).
        gateway_factory: Builds a provider's gateway handle (tests may pass their own).
    """

    def __init__(
        self,
        providers: dict[str, ProviderSettings],
        memo: MemoStore | None = None,
        gateway_factory: Callable[[ProviderSettings], Any] | None = None,
    ) -> None:
        self._providers = providers
        self._memo = memo
        self._factory = gateway_factory or (lambda p: GatewayActor.remote(p))
        self._gateways: dict[str, list[Any]] = {}
        self._busy: dict[str, list[int]] = {}
        self._accounts: dict[str, _Account] = {}

    # -- tasks --------------------------------------------------------------------------------

    def open(
        self,
        task_id: str,
        *,
        tenant: str,
        budget: Budget | None = None,
        memo: bool = True,
        quota: TokenQuota | None = None,
        on_reply: Callable[[LMReply, LMRequest], None] | None = None,
    ) -> None:
        """Start accounting a task's LM calls."""
        self._accounts[task_id] = _Account(
            budget=TaskBudget(budget), tenant=tenant, memo=memo, quota=quota, on_reply=on_reply
        )

    def usage(self, task_id: str) -> LMUsage | None:
        """What the task's LM calls used so far (``None`` for a task with no account)."""
        account = self._accounts.get(task_id)
        return None if account is None else account.usage

    async def stop(self, task_id: str, wait_s: float = 10.0, *, drain: bool = False) -> None:
        """No further call of the task is sent; calls in flight are cancelled and awaited.

        With ``drain`` (the task spent its budget) the calls in flight, which the budget
        admitted, are let finish and accounted (up to ``wait_s``) instead of cancelled.
        """
        account = self._accounts.get(task_id)
        if account is None:
            return
        account.stopped = True
        if drain:
            await _until_empty(account.inflight, wait_s)
        for ref in list(account.inflight):
            with contextlib.suppress(Exception):
                ray.cancel(ref)
        await _until_empty(account.inflight, wait_s)

    def close(self, task_id: str) -> LMUsage | None:
        """Stop accounting the task; its final usage."""
        account = self._accounts.pop(task_id, None)
        return None if account is None else account.usage

    # -- providers ----------------------------------------------------------------------------

    def resolve(self, provider: str | None, model: str | None) -> tuple[ProviderSettings, str]:
        """The provider and model a call goes to.

        Raises:
            InvalidInput: no provider is configured, or the named provider or model is not.
        """
        return resolve_provider(self._providers, provider, model)

    def warm(self) -> None:
        """Start every configured provider's gateway shards (once; their processes come up
        in the background)."""
        for provider in self._providers.values():
            self._shards(provider)

    def _shards(self, provider: ProviderSettings) -> list[Any]:
        shards = self._gateways.get(provider.name)
        if shards is None:
            shards = self._gateways[provider.name] = [self._factory(p) for p in provider.shards()]
            self._busy[provider.name] = [0] * len(shards)
        return shards

    def _gateway(self, provider: ProviderSettings) -> int:
        """The provider's least busy gateway shard (started on first use), counted busy."""
        self._shards(provider)
        busy = self._busy[provider.name]
        shard = min(range(len(busy)), key=busy.__getitem__)
        busy[shard] += 1
        return shard

    async def gateway_stats(self) -> list[dict[str, Any]]:
        """Each started gateway shard's counters."""
        every = [g for shards in self._gateways.values() for g in shards]
        return list(await asyncio.gather(*(g.stats.remote() for g in every)))

    # -- calls --------------------------------------------------------------------------------

    def extra_calls(self, task_id: str, calls: int) -> None:
        """Hold ``calls`` agent calls the task's plan did not count, all or none, before
        they are sent (an RLM session's turns and sub-calls; one hold for a whole batch).

        Raises:
            CallStopped: the task has ended.
            QuotaExceeded: a quota has no room for them; nothing is held.
        """
        account = self._accounts.get(task_id)
        if account is None or account.stopped:
            raise CallStopped(task_id)
        if account.quota is not None and calls > 0:
            account.quota.extra_call(calls)

    async def call(self, task_id: str, request: LMRequest, *, extra: bool = False) -> LMReply:
        """Admit, send and account one call (see the module docstring).

        ``extra`` marks a request beyond the one its agent call's plan counted (a second
        request of the same call): it also holds one more agent call on the user's quotas.

        Raises:
            CallStopped: the task has ended.
            RLMError: refused (budget, quota, bad provider/model/prompt) or failed.
        """
        account = self._live(task_id)
        admitted = self._admit(account, request, extra=extra)
        if isinstance(admitted, LMReply):
            return admitted
        shard = self._gateway(admitted.provider)
        try:
            answer = await self._send(
                account,
                admitted.provider,
                admitted.model,
                shard,
                lambda gateway: gateway.complete.remote(account.tenant, admitted.call),
            )
        except BaseException:
            self._release(account, admitted)
            raise
        return self._complete(account, admitted, answer)

    async def call_batch(
        self, task_id: str, requests: list[LMRequest]
    ) -> list[LMReply | RLMError | CallStopped]:
        """Admit, send and account many calls of a task at once (an RLM sub-call batch).

        Each request is admitted in order as :meth:`call` admits it (a request the budget or
        quota refuses gets its error, the others go on); the admitted ones are spread over
        the provider's gateway shards and each shard gets its share in one actor call, so a
        batch of hundreds costs the core a few actor calls, not hundreds.

        Returns:
            One outcome per request, in order: its reply, its error, or :class:`CallStopped`
            (the task ended before it was answered).

        Raises:
            CallStopped: the task had already ended.
        """
        account = self._live(task_id)
        outcomes: list[LMReply | RLMError | CallStopped] = [CallStopped(task_id)] * len(requests)
        groups: dict[tuple[str, int], list[tuple[int, _Admitted]]] = {}
        for i, request in enumerate(requests):
            try:
                admitted = self._admit(account, request, extra=False)
            except RLMError as err:
                outcomes[i] = err
                continue
            if isinstance(admitted, LMReply):
                outcomes[i] = admitted
                continue
            key = (admitted.provider.name, self._gateway(admitted.provider))
            groups.setdefault(key, []).append((i, admitted))

        async def send(shard: int, items: list[tuple[int, _Admitted]]) -> None:
            provider = items[0][1].provider
            calls = [a.call for _, a in items]
            try:
                answers = await self._send(
                    account,
                    provider,
                    items[0][1].model,
                    shard,
                    lambda gateway: gateway.complete_many.remote(account.tenant, calls),
                    taken=len(items),
                )
            except Exception as err:  # RLMError, CallStopped, or a bug: every call gets it
                failure = (
                    err
                    if isinstance(err, RLMError | CallStopped)
                    else InternalError(f"sending a batch of LM calls failed: {type(err).__name__}")
                )
                for i, admitted in items:
                    self._release(account, admitted)
                    outcomes[i] = failure
                return
            for (i, admitted), (kind, value) in zip(items, answers, strict=True):
                if kind != "ok":
                    self._release(account, admitted)
                    outcomes[i] = error_from_payload(value)
                    continue
                try:
                    outcomes[i] = self._complete(account, admitted, value)
                except RLMError as err:
                    outcomes[i] = err

        await asyncio.gather(*(send(shard, items) for (_, shard), items in groups.items()))
        return outcomes

    def _live(self, task_id: str) -> _Account:
        account = self._accounts.get(task_id)
        if account is None or account.stopped:
            raise CallStopped(task_id)
        return account

    def _admit(self, account: _Account, request: LMRequest, *, extra: bool) -> _Admitted | LMReply:
        """Resolve, check, and reserve a call's worst case (or answer it from the memo).

        Raises:
            RLMError: a bad provider, model or prompt; the budget or a quota refused it.
        """
        provider, model = self.resolve(request.provider, request.model)
        max_tokens = request.max_tokens or provider.default_max_tokens
        messages = [dict(m) for m in request.messages]
        prompt_tokens = estimate_tokens(messages)
        if provider.context_window is not None:
            _check_window(provider, model, messages, max_tokens)
        key = None
        if self._memo is not None and account.memo and request.memo and request.temperature == 0:
            key = memo_key(provider.name, model, request, max_tokens)
            cached = self._memo.get(key)
            if cached is not None:
                self._count(account, cached, request)
                return cached
        worst = prompt_tokens + max_tokens
        worst_cost = cost_usd(
            prompt_tokens, max_tokens, provider.input_price_per_mtok, provider.output_price_per_mtok
        )
        hold = account.budget.reserve(worst, worst_cost)
        quota_hold = None
        try:
            if account.quota is not None:
                if extra:
                    account.quota.extra_call()
                quota_hold = account.quota.reserve(worst)
        except BaseException:
            account.budget.release(hold)
            raise
        call = {
            "model": model,
            "messages": messages,
            "maxTokens": max_tokens,
            "temperature": request.temperature,
            "tokens": worst,
        }
        return _Admitted(
            request,
            provider,
            model,
            call,
            prompt_tokens,
            max_tokens,
            worst_cost,
            hold,
            quota_hold,
            key,
        )

    @staticmethod
    def _release(account: _Account, admitted: _Admitted) -> None:
        """Give back a call's reservations: it was never answered, so it charges nothing."""
        account.budget.release(admitted.hold)
        if admitted.quota_hold is not None and account.quota is not None:
            account.quota.release(admitted.quota_hold)

    def _complete(self, account: _Account, admitted: _Admitted, answer: dict[str, Any]) -> LMReply:
        """Settle an answered call, count it and memoise it."""
        provider, model = admitted.provider, admitted.model
        if not answer["usage"]:
            # Answered, but the provider did not say what it cost: charge the worst case we
            # reserved (the provider bills it all the same) and fail the task.
            self._settle(
                account,
                admitted.hold,
                admitted.quota_hold,
                admitted.prompt_tokens,
                admitted.max_tokens,
                admitted.worst_cost,
            )
            raise InternalError(
                f"LM provider {provider.name!r} (model {model!r}) answered without usage, so "
                "the call cannot be accounted; the worst case was charged",
                {"provider": provider.name, "model": model, "reason": "no usage"},
            )
        spent = cost_usd(
            answer["inputTokens"],
            answer["outputTokens"],
            provider.input_price_per_mtok,
            provider.output_price_per_mtok,
        )
        self._settle(
            account,
            admitted.hold,
            admitted.quota_hold,
            answer["inputTokens"],
            answer["outputTokens"],
            spent,
        )
        reply = LMReply(
            text=answer["text"],
            provider=provider.name,
            model=answer["model"],
            input_tokens=answer["inputTokens"],
            output_tokens=answer["outputTokens"],
            cost_usd=spent,
            latency_s=answer["latencyS"],
            finish_reason=answer["finishReason"],
        )
        self._count(account, reply, admitted.request)
        if admitted.memo_key is not None and self._memo is not None:
            try:
                self._memo.put(admitted.memo_key, reply)
            except Exception:  # pragma: no cover - a full disk must not fail the call
                log.exception("could not memoise an LM reply")
        return reply

    async def _send(
        self,
        account: _Account,
        provider: ProviderSettings,
        model: str,
        shard: int,
        submit: Callable[[Any], Any],
        *,
        taken: int = 1,
    ) -> Any:
        """Send through a gateway shard (``submit(gateway) -> ref``), cancellable in flight.

        ``taken``: the calls the shard was counted busy with (given back at the end).
        """
        ref = submit(self._gateways[provider.name][shard])
        account.inflight.add(ref)
        try:
            if account.stopped:  # stopped while this call was being admitted
                ray.cancel(ref)
                raise CallStopped("stopped")
            return await ref
        except (ray.exceptions.TaskCancelledError, asyncio.CancelledError):
            raise CallStopped("cancelled") from None
        except ray.exceptions.RayTaskError as err:
            cause = err.as_instanceof_cause()
            if isinstance(cause, RLMError):
                raise cause from None
            raise InternalError(
                f"the gateway of LM provider {provider.name!r} failed: {type(cause).__name__}",
                {"provider": provider.name, "model": model},
            ) from None
        except ray.exceptions.RayActorError:
            raise InternalError(
                f"the gateway of LM provider {provider.name!r} died while sending a call",
                {"provider": provider.name, "model": model},
            ) from None
        finally:
            account.inflight.discard(ref)
            self._busy[provider.name][shard] -= taken

    @staticmethod
    def _settle(
        account: _Account,
        hold: BudgetHold,
        quota_hold: Any,
        input_tokens: int,
        output_tokens: int,
        spent: float,
    ) -> None:
        account.budget.settle(hold, input_tokens + output_tokens, spent, counted=True)
        if quota_hold is not None and account.quota is not None:
            account.quota.settle(quota_hold, input_tokens, output_tokens, spent)

    @staticmethod
    def _count(account: _Account, reply: LMReply, request: LMRequest) -> None:
        account.usage.add(reply)
        if account.on_reply is not None:
            account.on_reply(reply, request)


async def _until_empty(inflight: set[Any], wait_s: float) -> None:
    # Each call's own coroutine removes its reference when it ends (answered, failed or
    # cancelled): wait for that rather than awaiting the references a second time.
    deadline = time.monotonic() + wait_s
    while inflight and time.monotonic() < deadline:
        await asyncio.sleep(0.005)


def _check_window(
    provider: ProviderSettings, model: str, messages: list[dict[str, str]], max_tokens: int
) -> None:
    # The usual ~4 characters a token: the generous reservation estimate would refuse prompts
    # that fit; a prompt this check lets through and the model refuses is refused the same.
    typical = sum(len(str(m.get("content", ""))) // 4 + 4 for m in messages)
    window = provider.context_window
    assert window is not None
    if typical + max_tokens > window:
        raise InvalidInput(
            f"the prompt (~{typical} tokens) plus maxTokens ({max_tokens}) is over the context "
            f"window of LM provider {provider.name!r} (model {model!r}): {window} tokens",
            {
                "provider": provider.name,
                "model": model,
                "contextWindow": window,
                "promptTokens": typical,
                "maxTokens": max_tokens,
            },
        )
