"""An identity provider's signing keys (a JWKS document), fetched asynchronously and cached.

A server verifying RS/ES tokens from an identity provider asks :class:`JwksCache` for the key
a token names. The document is fetched with httpx, asynchronously on the server's event loop
(:meth:`JwksCache.key`; concurrent misses on one loop share one fetch) or synchronously for
the CLI and scripts (:meth:`JwksCache.key_sync`), and reused for ``cache_s``.

Rotation: a token naming a key id the cached document lacks makes the cache fetch the document
again at once (a provider publishes a new key before signing with it), but never more than once
per ``refresh_cooldown_s``, so tokens with made-up key ids cannot make the server hammer the
provider. A key the provider withdrew stops verifying once the cached document expires.

Availability: when a refresh fails (the provider is down, or answers garbage), an expired
document keeps serving for up to one more ``cache_s``; with no document at all, tokens are
refused (``signing keys unavailable``) and the next attempt waits for the cooldown.

Only public PyJWT APIs are used (``PyJWK.from_dict``); a key's declared ``alg`` is read from
the document itself, which this module parses.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from rlm.errors import Unauthorized

__all__ = ["MAX_DOCUMENT_BYTES", "JwksCache", "JwksKey", "parse_jwks", "public_key_of"]

_log = logging.getLogger(__name__)

#: The largest JWKS document read (providers publish a few keys: a few KiB).
MAX_DOCUMENT_BYTES: Final = 512 * 1024


def _unauthorized(reason: str) -> Unauthorized:
    return Unauthorized(f"invalid token: {reason}", {"reason": reason})


@dataclass(frozen=True, slots=True)
class JwksKey:
    """One key of a JWKS document.

    Attributes:
        kid: Its key id (``None`` when the document gives none).
        key: What PyJWT built from it: a public key, or something a token is never verified
            with (a symmetric or private key, refused when named).
        alg: The algorithm the document pins it to, if any.
    """

    kid: str | None
    key: Any
    alg: str | None


@dataclass(frozen=True, slots=True)
class _Document:
    keys: tuple[JwksKey, ...]
    fetched_at: float
    by_kid: Mapping[str, JwksKey] = field(default_factory=dict)

    @classmethod
    def of(cls, keys: Sequence[JwksKey], fetched_at: float) -> _Document:
        by_kid = {k.kid: k for k in keys if k.kid is not None}
        return cls(tuple(keys), fetched_at, by_kid)


class _FetchFailed(Exception):
    """The endpoint could not be reached or did not answer with JSON."""


def parse_jwks(body: bytes) -> list[JwksKey]:
    """The signing keys of a JWKS document.

    Keys marked for another use than signatures are left out, as are keys PyJWT cannot read
    (logged). A JSON value that is not a JWKS holds no keys.

    Args:
        body: The document as fetched.

    Returns:
        Its keys, in document order.

    Raises:
        ValueError: ``body`` is not JSON.
    """
    data = json.loads(body)
    entries = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        return []
    keys: list[JwksKey] = []
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        try:
            built = jwt.PyJWK.from_dict(entry)
        except jwt.PyJWTError as exc:
            _log.warning("JWKS key %r skipped: %s", entry.get("kid"), exc)
            continue
        kid, alg = entry.get("kid"), entry.get("alg")
        keys.append(
            JwksKey(
                kid if isinstance(kid, str) else None,
                built.key,
                alg if isinstance(alg, str) else None,
            )
        )
    return keys


class JwksCache:
    """The keys of one JWKS endpoint, cached and refreshed as described in the module.

    Args:
        url: The endpoint (http or https).
        cache_s: How long a fetched document is reused.
        refresh_cooldown_s: The least time between two fetches (rotation and failures).
        timeout_s: Connect and read timeout of a fetch.
        clock: Monotonic seconds (tests pass their own).
        transport: An httpx async transport for :meth:`key` (tests: ``MockTransport``).
        sync_transport: An httpx transport for :meth:`key_sync`.
    """

    def __init__(
        self,
        url: str,
        *,
        cache_s: float = 300.0,
        refresh_cooldown_s: float = 10.0,
        timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
        sync_transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url
        self._cache_s = cache_s
        self._cooldown_s = refresh_cooldown_s
        self._timeout = httpx.Timeout(timeout_s)
        self._clock = clock
        self._transport = transport
        self._sync_transport = sync_transport
        self._document: _Document | None = None
        self._last_attempt = float("-inf")
        self._lock = threading.Lock()  # the document and the attempt time, across threads
        self._sync_fetch = threading.Lock()  # one synchronous fetch at a time
        # One fetch in flight per event loop: concurrent misses on a loop await the same one.
        self._fetches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[None]]
        self._fetches = weakref.WeakKeyDictionary()
        self.fetches = 0
        """How many times the endpoint was asked (for tests and metrics)."""

    # -- lookups ------------------------------------------------------------------------------

    async def key(self, header: Mapping[str, Any]) -> JwksKey:
        """The key a token's header names, fetching the document when needed (async).

        Raises:
            Unauthorized: ``malformed token``, ``token names no key id``, ``unknown signing
                key`` or ``signing keys unavailable``.
        """
        kid = _kid(header)
        if self._wants_fetch(kid, expired_only=True):
            await self._fetch_shared()
        found = self._find(kid)
        if found is None and self._wants_fetch(kid, expired_only=False):
            await self._fetch_shared()  # a key the cached document lacks: a rotation?
            found = self._find(kid)
        return self._found(found)

    def key_sync(self, header: Mapping[str, Any]) -> JwksKey:
        """:meth:`key` for callers without an event loop (blocks on a fetch)."""
        kid = _kid(header)
        if self._wants_fetch(kid, expired_only=True):
            self._fetch_blocking()
        found = self._find(kid)
        if found is None and self._wants_fetch(kid, expired_only=False):
            self._fetch_blocking()
            found = self._find(kid)
        return self._found(found)

    def _usable(self) -> _Document:
        """The document tokens are checked against now, or refuse."""
        with self._lock:
            doc = self._document
        if doc is None or self._clock() - doc.fetched_at >= 2 * self._cache_s:
            raise _unauthorized("signing keys unavailable")
        return doc

    def _find(self, kid: str | None) -> JwksKey | None:
        doc = self._usable()
        if kid is None:
            # A provider with a single key may leave kid out of its tokens.
            if len(doc.keys) != 1:
                raise _unauthorized("token names no key id")
            return doc.keys[0]
        return doc.by_kid.get(kid)

    @staticmethod
    def _found(found: JwksKey | None) -> JwksKey:
        if found is None:
            raise _unauthorized("unknown signing key")
        return found

    def _wants_fetch(self, kid: str | None, *, expired_only: bool) -> bool:
        now = self._clock()
        with self._lock:
            doc = self._document
            cooled = now - self._last_attempt >= self._cooldown_s
        if doc is None or now - doc.fetched_at >= self._cache_s:
            return cooled
        if expired_only:
            return False
        # A fresh document without the key: fetch again, unless one was fetched very lately.
        return kid is not None and kid not in doc.by_kid and cooled

    # -- fetching -----------------------------------------------------------------------------

    async def _fetch_shared(self) -> None:
        loop = asyncio.get_running_loop()
        task = self._fetches.get(loop)
        if task is None or task.done():
            task = loop.create_task(self._fetch_async())
            self._fetches[loop] = task
        # shield: one caller giving up (its request cancelled) does not cancel the others'.
        await asyncio.shield(task)

    async def _fetch_async(self) -> None:
        self._attempted()
        try:
            async with (
                httpx.AsyncClient(
                    timeout=self._timeout, transport=self._transport, follow_redirects=True
                ) as client,
                client.stream("GET", self.url, headers=_ACCEPT) as response,
            ):
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    _check_size(body)
                response.raise_for_status()
            self._install(bytes(body))
        except (httpx.HTTPError, _FetchFailed, ValueError) as exc:
            self._failed(exc)

    def _fetch_blocking(self) -> None:
        with self._lock:
            seen = self._last_attempt
        with self._sync_fetch:
            with self._lock:
                if self._last_attempt != seen:
                    return  # another thread fetched meanwhile: use what it found
            self._attempted()
            try:
                with (
                    httpx.Client(
                        timeout=self._timeout,
                        transport=self._sync_transport,
                        follow_redirects=True,
                    ) as client,
                    client.stream("GET", self.url, headers=_ACCEPT) as response,
                ):
                    body = bytearray()
                    for chunk in response.iter_bytes():
                        body += chunk
                        _check_size(body)
                    response.raise_for_status()
                self._install(bytes(body))
            except (httpx.HTTPError, _FetchFailed, ValueError) as exc:
                self._failed(exc)

    def _attempted(self) -> None:
        with self._lock:
            self._last_attempt = self._clock()
        self.fetches += 1

    def _install(self, body: bytes) -> None:
        keys = parse_jwks(body)  # ValueError: not JSON
        with self._lock:
            self._document = _Document.of(keys, self._clock())

    def _failed(self, exc: Exception) -> None:
        # Logged, never raised: the lookup that follows decides (a stale document may serve).
        _log.warning("JWKS endpoint %s unavailable: %s", self.url, exc)


_ACCEPT = {"Accept": "application/json"}


def _check_size(body: bytearray) -> None:
    if len(body) > MAX_DOCUMENT_BYTES:
        raise _FetchFailed(f"the JWKS document is larger than {MAX_DOCUMENT_BYTES} bytes")


def _kid(header: Mapping[str, Any]) -> str | None:
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise _unauthorized("malformed token")
    return kid


def public_key_of(found: JwksKey) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
    """The public key of a JWKS entry, or refuse a key that is not one.

    Raises:
        Unauthorized: ``unsupported signing key`` (a symmetric or exotic key).
    """
    raw = found.key
    if isinstance(raw, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raw = raw.public_key()
    if not isinstance(raw, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        # Symmetric ("oct") or exotic keys have no business in a public key set.
        raise _unauthorized("unsupported signing key")
    return raw
