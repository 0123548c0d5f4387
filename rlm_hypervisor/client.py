"""The HTTP clients of the RLM Hypervisor API: :class:`RLMClient` and :class:`AsyncRLMClient`.

Both send the calls described in :mod:`rlm_hypervisor._calls` over httpx, retry what the
policy in :mod:`rlm_hypervisor._retry` allows, and raise the server's own error classes
(:mod:`rlm.errors`), each with ``request_id`` and ``status_code`` set.

Network failures that outlast the retries propagate as :class:`httpx.TransportError`
(``httpx.ConnectError``, ``httpx.ReadTimeout``...): they are not the API's errors, and hiding
them behind one would lose what went wrong.
"""

from __future__ import annotations

import os
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from rlm.models import ExecuteRequest
from rlm_hypervisor import _calls
from rlm_hypervisor._calls import Call
from rlm_hypervisor._errors import error_from_response
from rlm_hypervisor._evaluations import AsyncEvaluationsAPI, EvaluationsAPI
from rlm_hypervisor._resources import (
    AsyncQuotasAPI,
    AsyncSecurityAPI,
    AsyncStorageAPI,
    AsyncTasksAPI,
    AsyncWebhooksAPI,
    QuotasAPI,
    SecurityAPI,
    StorageAPI,
    TasksAPI,
    WebhooksAPI,
)
from rlm_hypervisor._retry import backoff_s, retry_delay, transport_error_is_retryable
from rlm_hypervisor._version import __version__
from rlm_hypervisor.result import ExecuteResult

__all__ = [
    "AsyncRLMClient",
    "DEFAULT_BASE_URL",
    "RLMClient",
    "Verify",
    "tls_verification",
]

T = TypeVar("T")

#: Where the API listens when neither ``base_url`` nor ``RLM_BASE_URL`` says otherwise.
DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"

_USER_AGENT = f"rlm-hypervisor-python/{__version__}"

#: How a client checks the server's certificate (see :func:`tls_verification`).
Verify = bool | str | os.PathLike[str] | ssl.SSLContext


def tls_verification(verify: Verify) -> bool | ssl.SSLContext:
    """What httpx's ``verify`` gets: a CA bundle path becomes an ``SSLContext`` trusting it.

    Args:
        verify: ``True``, ``False``, a CA bundle path, or an ``SSLContext``.

    Raises:
        FileNotFoundError: the CA bundle does not exist.
    """
    if isinstance(verify, bool | ssl.SSLContext):
        return verify
    return ssl.create_default_context(cafile=os.fspath(verify))


class _Settings:
    """What both clients resolve from their arguments and the environment."""

    def __init__(
        self,
        api_key: str | None,
        base_url: str | None,
        region: str | None,
        timeout: float,
        max_retries: int,
    ) -> None:
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        # Read at construction, never at import: tests and apps set the environment late.
        self.api_key = api_key or os.environ.get("RLM_API_KEY") or None
        self.base_url = (base_url or os.environ.get("RLM_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.region = region
        self.timeout = float(timeout)
        self.max_retries = max_retries

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": _USER_AGENT}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def request_kwargs(self, call: Call[Any]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"headers": call.headers, "params": call.params}
        if call.json is not None:
            kwargs["json"] = call.json
        if call.timeout is not None:
            kwargs["timeout"] = call.timeout
        return kwargs


class _ClientBase:
    """Settings and ``repr`` shared by both clients; the API key stays out of ``repr``."""

    _settings: _Settings

    @property
    def base_url(self) -> str:
        """The API's base URL, e.g. ``http://127.0.0.1:8000/v1``."""
        return self._settings.base_url

    @property
    def region(self) -> str | None:
        """The region asked for at construction (kept for the hosted API; unused locally)."""
        return self._settings.region

    @property
    def timeout(self) -> float:
        """Seconds each HTTP request may take (a synchronous execute reads for longer)."""
        return self._settings.timeout

    @property
    def max_retries(self) -> int:
        """How many times a failed call may be repeated."""
        return self._settings.max_retries

    def __repr__(self) -> str:
        key = "set" if self._settings.api_key else "unset"
        return f"{type(self).__name__}(base_url={self.base_url!r}, api_key={key})"


class RLMClient(_ClientBase):
    """A synchronous client of the RLM Hypervisor API.

    Args:
        api_key: The bearer token; defaults to ``$RLM_API_KEY``. Without one, requests go
            unauthenticated (``health()`` works; the rest raise ``Unauthorized``).
        base_url: Defaults to ``$RLM_BASE_URL``, else ``http://127.0.0.1:8000/v1``.
        region: Kept for compatibility with the hosted API; it changes nothing locally.
        timeout: Seconds per HTTP request. A synchronous :meth:`execute` reads for as long as
            the task may run (``options.timeoutMs``, else 600 s) plus 10 s.
        max_retries: Repeats allowed per call (see :mod:`rlm_hypervisor._retry`); 0 disables.
        verify: How to check the server's certificate: ``True`` (the system's CAs), the path
            of a CA bundle (e.g. a self-signed certificate of the service), an
            ``ssl.SSLContext``, or ``False`` (no check: never in production).
        transport: An httpx transport, e.g. ``httpx.MockTransport`` in tests.
        sleep: How to pause between retries and polls (tests pass a recorder).
        clock: A monotonic clock in seconds, for :meth:`TasksAPI.wait` deadlines.
        jitter: Draws a number in ``[0, 1)`` per backoff sleep, placing it between half and
            all of the exponential step (see :mod:`rlm_hypervisor._retry`); tests pass a
            constant.

    Attributes:
        tasks: :class:`~rlm_hypervisor._resources.TasksAPI`: get, cancel, wait, list,
            events (an iterator over the task's live events), trajectory.
        quotas: :class:`~rlm_hypervisor._resources.QuotasAPI`.
        storage: :class:`~rlm_hypervisor._resources.StorageAPI`.
        security: :class:`~rlm_hypervisor._resources.SecurityAPI`.
        webhooks: :class:`~rlm_hypervisor._resources.WebhooksAPI`.
        evaluations: :class:`~rlm_hypervisor._evaluations.EvaluationsAPI`: record, list
            and read evaluation runs.

    Example:
        >>> from rlm_hypervisor import RLMClient
        >>> with RLMClient(api_key="your-api-key") as client:  # doctest: +SKIP
        ...     result = client.execute({
        ...         "type": "recursive",
        ...         "description": "Process items",
        ...         "input": {"items": [1, 2, 3, 4, 5], "operation": "sum"},
        ...     })
        ...     print(f"Result: {result.output}")
        Result: 15
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        region: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 3,
        verify: Verify = True,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._settings = _Settings(api_key, base_url, region, timeout, max_retries)
        self._sleep = sleep
        self._jitter = jitter
        self._http = httpx.Client(
            verify=tls_verification(verify),
            base_url=self._settings.base_url,
            headers=self._settings.headers(),
            timeout=self._settings.timeout,
            transport=transport,
        )
        self.tasks = TasksAPI(self._send, sleep, clock, self._stream, max_retries, jitter)
        self.quotas = QuotasAPI(self._send)
        self.storage = StorageAPI(self._send)
        self.security = SecurityAPI(self._send)
        self.webhooks = WebhooksAPI(self._send)
        self.evaluations = EvaluationsAPI(self._send)

    def execute(
        self,
        request: dict[str, Any] | ExecuteRequest,
        *,
        wait: bool = True,
        idempotency_key: str | None = None,
    ) -> ExecuteResult:
        """Run a task (``POST /execute``).

        Args:
            request: An :class:`~rlm.models.ExecuteRequest` or its dict, as in the API
                document. It is validated before anything is sent.
            wait: ``True`` returns the finished result (if the server answers 202 anyway, the
                task is polled to the end). ``False`` submits in async mode and returns at
                once with ``status="pending"`` and the ``task_id`` to poll.
            idempotency_key: Sent as ``Idempotency-Key`` (default: a new one per call). Within
                24 h the same key and request answer the task the first call created; pass
                your own to make a repeat of the whole call (after a crash of your program,
                say) safe too.

        Returns:
            The result. A task that failed is returned with ``success=False`` and ``error``;
            see :meth:`ExecuteResult.raise_for_error`.

        Raises:
            InvalidInput: the request is not valid (raised before sending, or by the server).
            QuotaExceeded: a quota would be exceeded (after retries allowed by Retry-After).
            RateLimited: too many requests (likewise).
            TaskTimeout: the task ran past ``options.timeoutMs``.
            RLMError: any other error answer, as its :mod:`rlm.errors` class.
            httpx.TransportError: the network failed (after the retries allowed: a repeat
                carries the same ``Idempotency-Key``, so it never runs the task twice).
        """
        call = _calls.execute(
            request,
            respond_async=not wait,
            timeout=self._settings.timeout,
            idempotency_key=idempotency_key,
        )
        result = self._send(call)
        if wait and not result.done:
            return self.tasks.wait(result.task_id)
        return result

    def submit(
        self, request: dict[str, Any] | ExecuteRequest, *, idempotency_key: str | None = None
    ) -> str:
        """Start a task in async mode and return its id (poll with ``client.tasks``)."""
        return self.execute(request, wait=False, idempotency_key=idempotency_key).task_id

    def health(self) -> dict[str, Any]:
        """``GET /health``: ``{"status": "ok", ...}``; needs no credentials."""
        return self._send(_calls.health())

    def close(self) -> None:
        """Close the connection pool; the client cannot be used afterwards."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _stream(self, call: Call[Any]) -> AbstractContextManager[httpx.Response]:
        return self._http.stream(call.method, call.path, **self._settings.request_kwargs(call))

    def _send(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            retries_left = self._settings.max_retries - attempt
            try:
                response = self._http.request(
                    call.method, call.path, **self._settings.request_kwargs(call)
                )
            except httpx.TransportError as exc:
                if retries_left <= 0 or not transport_error_is_retryable(
                    exc, idempotent=call.idempotent
                ):
                    raise
                self._sleep(backoff_s(attempt, self._jitter()))
                attempt += 1
                continue
            if response.is_success:
                return call.parse(response)
            delay = retry_delay(
                response,
                attempt=attempt,
                retries_left=retries_left,
                idempotent=call.idempotent,
                rand=self._jitter(),
            )
            if delay is None:
                raise error_from_response(response)
            self._sleep(delay)
            attempt += 1


class AsyncRLMClient(_ClientBase):
    """The asyncio twin of :class:`RLMClient`: same arguments, same methods, awaited.

    Args:
        api_key: The bearer token; defaults to ``$RLM_API_KEY``.
        base_url: Defaults to ``$RLM_BASE_URL``, else ``http://127.0.0.1:8000/v1``.
        region: Kept for compatibility with the hosted API; it changes nothing locally.
        timeout: Seconds per HTTP request (a synchronous execute reads for longer).
        max_retries: Repeats allowed per call; 0 disables.
        verify: As for :class:`RLMClient`.
        transport: An httpx async transport, e.g. ``httpx.MockTransport`` in tests.
        sleep: An awaitable pause between retries and polls (``None``: ``asyncio.sleep``).
        clock: A monotonic clock in seconds, for ``tasks.wait`` deadlines.
        jitter: As for :class:`RLMClient`.

    Example:
        >>> import asyncio
        >>> from rlm_hypervisor import AsyncRLMClient
        >>> async def main() -> None:
        ...     async with AsyncRLMClient(api_key="your-api-key") as client:
        ...         task_id = await client.submit({
        ...             "type": "recursive", "description": "Process items",
        ...             "input": {"items": [1, 2, 3, 4, 5], "operation": "sum"},
        ...         })
        ...         result = await client.tasks.wait(task_id, timeout=60)
        ...         print(f"Result: {result.output}")
        >>> asyncio.run(main())  # doctest: +SKIP
        Result: 15
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        region: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 3,
        verify: Verify = True,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if sleep is None:
            # Imported here, not at the top: asyncio is a fifth of ``import rlm_hypervisor``,
            # and a synchronous user never needs it.
            import asyncio

            sleep = asyncio.sleep
        self._settings = _Settings(api_key, base_url, region, timeout, max_retries)
        self._sleep = sleep
        self._jitter = jitter
        self._http = httpx.AsyncClient(
            verify=tls_verification(verify),
            base_url=self._settings.base_url,
            headers=self._settings.headers(),
            timeout=self._settings.timeout,
            transport=transport,
        )
        self.tasks = AsyncTasksAPI(self._send, sleep, clock, self._stream, max_retries, jitter)
        self.quotas = AsyncQuotasAPI(self._send)
        self.storage = AsyncStorageAPI(self._send)
        self.security = AsyncSecurityAPI(self._send)
        self.webhooks = AsyncWebhooksAPI(self._send)
        self.evaluations = AsyncEvaluationsAPI(self._send)

    async def execute(
        self,
        request: dict[str, Any] | ExecuteRequest,
        *,
        wait: bool = True,
        idempotency_key: str | None = None,
    ) -> ExecuteResult:
        """See :meth:`RLMClient.execute`."""
        call = _calls.execute(
            request,
            respond_async=not wait,
            timeout=self._settings.timeout,
            idempotency_key=idempotency_key,
        )
        result = await self._send(call)
        if wait and not result.done:
            return await self.tasks.wait(result.task_id)
        return result

    async def submit(
        self, request: dict[str, Any] | ExecuteRequest, *, idempotency_key: str | None = None
    ) -> str:
        """See :meth:`RLMClient.submit`."""
        return (await self.execute(request, wait=False, idempotency_key=idempotency_key)).task_id

    async def health(self) -> dict[str, Any]:
        """See :meth:`RLMClient.health`."""
        return await self._send(_calls.health())

    async def aclose(self) -> None:
        """Close the connection pool; the client cannot be used afterwards."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _stream(self, call: Call[Any]) -> AbstractAsyncContextManager[httpx.Response]:
        return self._http.stream(call.method, call.path, **self._settings.request_kwargs(call))

    async def _send(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            retries_left = self._settings.max_retries - attempt
            try:
                response = await self._http.request(
                    call.method, call.path, **self._settings.request_kwargs(call)
                )
            except httpx.TransportError as exc:
                if retries_left <= 0 or not transport_error_is_retryable(
                    exc, idempotent=call.idempotent
                ):
                    raise
                await self._sleep(backoff_s(attempt, self._jitter()))
                attempt += 1
                continue
            if response.is_success:
                return call.parse(response)
            delay = retry_delay(
                response,
                attempt=attempt,
                retries_left=retries_left,
                idempotent=call.idempotent,
                rand=self._jitter(),
            )
            if delay is None:
                raise error_from_response(response)
            await self._sleep(delay)
            attempt += 1
