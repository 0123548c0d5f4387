"""The JWKS cache: asynchronous fetches that never block the loop, shared misses, caching,
key rotation with a cooldown, withdrawn keys, stale-if-error, and public PyJWT APIs only."""

from __future__ import annotations

import asyncio
import inspect
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

import rlm.auth.jwks
import rlm.auth.keys
from rlm.auth import AuthSettings, KeySet, verify_token, verify_token_async
from rlm.auth.jwks import MAX_DOCUMENT_BYTES, JwksCache
from rlm.errors import Unauthorized

ISS, AUD = "rlm-hypervisor", "rlm-api"
SETTINGS = AuthSettings(algorithms=("RS256",), jwks_url="http://idp.test/jwks")


@pytest.fixture(scope="module")
def keys() -> dict[str, rsa.RSAPrivateKey]:
    return {kid: rsa.generate_private_key(public_exponent=65537, key_size=2048) for kid in "abc"}


def _jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    return {**RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid, "alg": "RS256"}


def _token(key: rsa.RSAPrivateKey, kid: str, sub: str = "alice") -> str:
    now = int(time.time())
    claims = {"iss": ISS, "aud": AUD, "sub": sub, "iat": now, "exp": now + 600}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


class _Provider:
    """An identity provider behind httpx.MockTransport: its published keys, or a failure."""

    def __init__(self, published: dict[str, Any]) -> None:
        self.published = published
        self.status = 200
        self.body: bytes | None = None
        self.hits = 0

    def _answer(self, request: httpx.Request) -> httpx.Response:
        self.hits += 1
        if self.status != 200:
            return httpx.Response(self.status, text="down")
        return httpx.Response(200, content=self.body or json.dumps(self.published).encode())

    def sync(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._answer)

    def asynchronous(self) -> httpx.MockTransport:
        async def answer(request: httpx.Request) -> httpx.Response:
            await asyncio.sleep(0)  # a real await point: other requests interleave here
            return self._answer(request)

        return httpx.MockTransport(answer)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _keyset(provider: _Provider, clock: _Clock, **cache: Any) -> KeySet:
    keyset = KeySet([], jwks_url=SETTINGS.jwks_url, jwks_algorithms=("RS256",))
    keyset._jwks = JwksCache(
        SETTINGS.jwks_url or "",
        clock=clock,
        transport=provider.asynchronous(),
        sync_transport=provider.sync(),
        **cache,
    )
    return keyset


def _reason(excinfo: pytest.ExceptionInfo[Unauthorized]) -> str:
    return str(excinfo.value.details["reason"])


def test_concurrent_misses_share_one_asynchronous_fetch(
    keys: dict[str, rsa.RSAPrivateKey],
) -> None:
    provider = _Provider({"keys": [_jwk(keys["a"], "a")]})
    keyset = _keyset(provider, _Clock())
    token = _token(keys["a"], "a")

    async def many() -> list[str]:
        found = await asyncio.gather(
            *(verify_token_async(token, keyset, SETTINGS) for _ in range(20))
        )
        return [p.user_id for p in found]

    assert asyncio.run(many()) == ["alice"] * 20
    assert provider.hits == 1
    assert verify_token(token, keyset, SETTINGS).user_id == "alice"  # cached, sync too
    assert provider.hits == 1


def test_a_new_key_is_fetched_at_once_but_not_more_than_once_per_cooldown(
    keys: dict[str, rsa.RSAPrivateKey],
) -> None:
    provider = _Provider({"keys": [_jwk(keys["a"], "a")]})
    clock = _Clock()
    keyset = _keyset(provider, clock, cache_s=300, refresh_cooldown_s=10)
    assert asyncio.run(verify_token_async(_token(keys["a"], "a"), keyset, SETTINGS))
    # The provider rotates: it publishes b and signs with it.
    clock.now += 11
    provider.published = {"keys": [_jwk(keys["a"], "a"), _jwk(keys["b"], "b")]}
    user = asyncio.run(verify_token_async(_token(keys["b"], "b", "bob"), keyset, SETTINGS))
    assert user.user_id == "bob" and provider.hits == 2
    # Made-up key ids cannot make the server hammer the provider: one refetch per cooldown.
    for _ in range(5):
        with pytest.raises(Unauthorized) as excinfo:
            asyncio.run(verify_token_async(_token(keys["c"], "made-up"), keyset, SETTINGS))
        assert _reason(excinfo) == "unknown signing key"
    assert provider.hits == 2
    clock.now += 11
    with pytest.raises(Unauthorized):
        verify_token(_token(keys["c"], "made-up"), keyset, SETTINGS)
    assert provider.hits == 3


def test_a_withdrawn_key_stops_verifying_when_the_document_expires(
    keys: dict[str, rsa.RSAPrivateKey],
) -> None:
    provider = _Provider({"keys": [_jwk(keys["a"], "a"), _jwk(keys["b"], "b")]})
    clock = _Clock()
    keyset = _keyset(provider, clock, cache_s=60, refresh_cooldown_s=10)
    old = _token(keys["a"], "a")
    assert asyncio.run(verify_token_async(old, keyset, SETTINGS)).user_id == "alice"
    provider.published = {"keys": [_jwk(keys["b"], "b")]}
    clock.now += 30
    assert asyncio.run(verify_token_async(old, keyset, SETTINGS))  # still cached
    clock.now += 31
    with pytest.raises(Unauthorized) as excinfo:
        asyncio.run(verify_token_async(old, keyset, SETTINGS))
    assert _reason(excinfo) == "unknown signing key"
    assert provider.hits == 2


def test_an_expired_document_serves_while_the_provider_is_down_then_stops(
    keys: dict[str, rsa.RSAPrivateKey],
) -> None:
    provider = _Provider({"keys": [_jwk(keys["a"], "a")]})
    clock = _Clock()
    keyset = _keyset(provider, clock, cache_s=60, refresh_cooldown_s=10)
    token = _token(keys["a"], "a")
    assert asyncio.run(verify_token_async(token, keyset, SETTINGS))
    provider.status = 503
    clock.now += 61  # expired: a refresh is tried, fails, the old document still serves
    assert asyncio.run(verify_token_async(token, keyset, SETTINGS)).user_id == "alice"
    assert provider.hits == 2
    clock.now += 60  # two cache periods old: no longer trusted
    with pytest.raises(Unauthorized) as excinfo:
        asyncio.run(verify_token_async(token, keyset, SETTINGS))
    assert _reason(excinfo) == "signing keys unavailable"
    provider.status = 200
    clock.now += 11
    assert asyncio.run(verify_token_async(token, keyset, SETTINGS)).user_id == "alice"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"x" * (MAX_DOCUMENT_BYTES + 1), "signing keys unavailable"),
        (b"not json", "signing keys unavailable"),
        (b'{"keys": "nope"}', "unknown signing key"),
        (b'{"keys": [{"kty": "RSA", "kid": "a", "n": "broken"}]}', "unknown signing key"),
    ],
)
def test_documents_that_are_not_a_key_set(
    keys: dict[str, rsa.RSAPrivateKey], body: bytes, reason: str
) -> None:
    provider = _Provider({})
    provider.body = body
    keyset = _keyset(provider, _Clock())
    with pytest.raises(Unauthorized) as excinfo:
        asyncio.run(verify_token_async(_token(keys["a"], "a"), keyset, SETTINGS))
    assert _reason(excinfo) == reason


def test_keys_for_encryption_are_not_signing_keys(keys: dict[str, rsa.RSAPrivateKey]) -> None:
    provider = _Provider({"keys": [{**_jwk(keys["a"], "a"), "use": "enc"}]})
    keyset = _keyset(provider, _Clock())
    with pytest.raises(Unauthorized) as excinfo:
        verify_token(_token(keys["a"], "a"), keyset, SETTINGS)
    assert _reason(excinfo) == "unknown signing key"


class _SlowProvider:
    """A real HTTP server whose JWKS answer waits until the test lets it go."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.release = threading.Event()
        body = json.dumps(document).encode()
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if not provider.release.wait(10):  # never let go: the loop was blocked
                    self.send_response(500)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/jwks"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def slow_provider(
    keys: dict[str, rsa.RSAPrivateKey], monkeypatch: pytest.MonkeyPatch
) -> Iterator[_SlowProvider]:
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    provider = _SlowProvider({"keys": [_jwk(keys["a"], "a")]})
    yield provider
    provider.close()


def test_a_fetch_over_the_network_never_blocks_the_event_loop(
    slow_provider: _SlowProvider, keys: dict[str, rsa.RSAPrivateKey]
) -> None:
    settings = AuthSettings(algorithms=("RS256",), jwks_url=slow_provider.url)
    keyset = KeySet([], jwks_url=slow_provider.url, jwks_algorithms=("RS256",))

    async def scenario() -> str:
        verifying = asyncio.create_task(
            verify_token_async(_token(keys["a"], "a"), keyset, settings)
        )
        # The provider answers only once this coroutine runs: were the fetch blocking the
        # loop, it never would, and the provider would give up with a 500 (failing this).
        await asyncio.sleep(0)
        while not verifying.done() and (keyset.jwks is None or keyset.jwks.fetches == 0):
            await asyncio.sleep(0.01)
        slow_provider.release.set()
        return (await verifying).user_id

    assert asyncio.run(scenario()) == "alice"


def test_only_public_pyjwt_apis() -> None:
    for module in (rlm.auth.jwks, rlm.auth.keys):
        source = inspect.getsource(module)
        assert "_jwk_data" not in source and "PyJWKClient" not in source
