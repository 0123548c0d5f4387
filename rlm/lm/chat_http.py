"""A provider's chat completions over HTTP: the ``openai`` client's request, for less CPU.

The gateway sends every completion of a provider through one :class:`ChatClient`. It sends
what ``openai.AsyncOpenAI`` sends for ``POST /chat/completions`` — the same URL, and the
headers the client itself reports (``default_headers`` and ``auth_headers``: the bearer key,
``OpenAI-Organization`` / ``OpenAI-Project`` from the environment, its user agent) — and it
fails the way the client fails, with the ``openai`` package's exception classes:

======================  ============================================
what happened           raised
======================  ============================================
status 400              ``openai.BadRequestError``
status 401 / 403        ``openai.AuthenticationError`` / ``PermissionDeniedError``
status 404 / 409 / 422  ``openai.NotFoundError`` / ``ConflictError`` /
                        ``UnprocessableEntityError``
status 429              ``openai.RateLimitError``
status >= 500           ``openai.InternalServerError``
any other non-2xx       ``openai.APIStatusError``
no answer in time       ``openai.APITimeoutError``
no connection           ``openai.APIConnectionError``
======================  ============================================

each with the response (its ``Retry-After`` headers) and the error body (``code``,
``message``) as the client gives them, so the gateway's retries and error messages are those
it had with the client. A 200's body is returned as bytes.

Why not the client itself: it spends about 0.7 ms of CPU a request building option models,
headers and an ``httpx`` request around the same few bytes, and reading cookies and a typed
response back; one aiohttp request costs about a quarter of that. On a small machine where
the gateways' CPU is what a fan-out of hundreds of calls waits on, that is the difference.
"""

from __future__ import annotations

import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

import aiohttp
import httpx
import openai
import orjson

__all__ = ["ChatClient"]

#: Error statuses and the ``openai`` exception each raises (>= 500: ``InternalServerError``).
_STATUS_ERRORS: dict[int, type[openai.APIStatusError]] = {
    400: openai.BadRequestError,
    401: openai.AuthenticationError,
    403: openai.PermissionDeniedError,
    404: openai.NotFoundError,
    409: openai.ConflictError,
    422: openai.UnprocessableEntityError,
    429: openai.RateLimitError,
}


class ChatClient:
    """``POST /chat/completions`` to one provider, as the ``openai`` client sends it.

    Args:
        base_url: The provider's ``/v1`` URL.
        api_key: Its key.
        timeout_s: The longest wait to connect and for the answer.
        max_connections: Connections kept to the provider.
    """

    def __init__(
        self, base_url: str, api_key: str, *, timeout_s: float, max_connections: int
    ) -> None:
        self._openai = openai.AsyncOpenAI(
            base_url=base_url, api_key=api_key, max_retries=0, timeout=timeout_s
        )
        self._url = str(self._openai.base_url) + "chat/completions"
        self._timeout_s = timeout_s
        self._max_connections = max_connections
        self._headers: dict[str, str] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._proxy: str | None = None

    def _open(self) -> tuple[aiohttp.ClientSession, dict[str, str]]:
        """The session and headers, made on first use on the running event loop."""
        if self._session is None or self._headers is None:
            # The client's headers are read on the loop, as the client reads them per request
            # (``X-Stainless-Async`` names the running async library).
            headers = {
                **self._openai.default_headers,
                **self._openai.auth_headers,
                "X-Stainless-Read-Timeout": str(self._timeout_s),
            }
            self._headers = {k: v for k, v in headers.items() if isinstance(v, str)}
            timeout = aiohttp.ClientTimeout(
                total=None,
                connect=self._timeout_s,
                sock_connect=self._timeout_s,
                sock_read=self._timeout_s,
            )
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections),
                timeout=timeout,
            )
            self._proxy = _env_proxy(self._url)
        return self._session, self._headers

    async def create(self, body: Mapping[str, Any]) -> bytes:
        """Send one chat completion request; the body of its 2xx answer.

        Raises:
            openai.APIStatusError: the provider answered an error status (see the module).
            openai.APITimeoutError: no answer within ``timeout_s``.
            openai.APIConnectionError: the provider could not be reached.
        """
        session, headers = self._open()
        try:
            async with session.post(
                self._url, data=orjson.dumps(body), headers=headers, proxy=self._proxy
            ) as answer:
                content = await answer.read()
                if 200 <= answer.status < 300:
                    return content
                raise self._status_error(answer.status, answer.headers, content)
        except TimeoutError:  # aiohttp's timeouts are asyncio's (the built-in TimeoutError)
            raise openai.APITimeoutError(request=self._request()) from None
        except (aiohttp.ClientError, OSError) as err:
            raise openai.APIConnectionError(request=self._request()) from err

    async def close(self) -> None:
        """Close the connections (a later request opens new ones)."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()
        await self._openai.close()

    def _request(self) -> httpx.Request:
        return httpx.Request("POST", self._url)

    def _status_error(
        self, status: int, headers: Mapping[str, str], content: bytes
    ) -> openai.APIStatusError:
        """The exception the ``openai`` client raises for this answer."""
        text = content.decode("utf-8", errors="replace").strip()
        body: object = text
        try:
            body = orjson.loads(text)
            message = f"Error code: {status} - {body}"
        except orjson.JSONDecodeError:
            message = text or f"Error code: {status}"
        data = body.get("error", body) if isinstance(body, dict) else body
        response = httpx.Response(
            status, headers=list(headers.items()), content=content, request=self._request()
        )
        cls = _STATUS_ERRORS.get(status)
        if cls is None:
            cls = openai.InternalServerError if status >= 500 else openai.APIStatusError
        return cls(message, response=response, body=data)


def _env_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``HTTPS_PROXY``, ``ALL_PROXY``, ... less
    ``NO_PROXY``), read once, as httpx reads it when its client is made. (aiohttp's own
    ``trust_env`` reads the environment again on every request: a fifth of the CPU a call.)
    """
    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return proxy
