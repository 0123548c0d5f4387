"""The replica's cache of verified tokens: reused until the token would be refused, never a
refusal, never longer than its ``ttl_s``."""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from rlm.auth import AuthSettings, KeySet, issue_token, load_signing_key, load_verification_keys
from rlm.auth.token_cache import VerifiedTokens
from rlm.errors import Unauthorized
from tests.support import wait_until


@pytest.fixture
def settings() -> AuthSettings:
    # No leeway: a token is refused the moment its ``exp`` passes.
    return AuthSettings(secret=SecretStr(secrets.token_urlsafe(32)), leeway_s=0)


@pytest.fixture
def keys(settings: AuthSettings, tmp_path: Path) -> KeySet:
    return load_verification_keys(settings, tmp_path, "development")


def _token(settings: AuthSettings, tmp_path: Path, sub: str = "alice", **kw: object) -> str:
    key = load_signing_key(settings, tmp_path, "development")
    return issue_token(sub, ["rlm:execute"], "user", settings=settings, key=key, **kw)  # type: ignore[arg-type]


class _Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_a_verified_token_is_reused(settings: AuthSettings, keys: KeySet, tmp_path: Path) -> None:
    cache = VerifiedTokens(keys, settings)
    token = _token(settings, tmp_path)
    first = asyncio.run(cache.principal(token))
    assert first.user_id == "alice" and first.has_scope("rlm:execute")
    # The same object: not verified again (a verification builds a new principal).
    assert asyncio.run(cache.principal(token)) is first
    other = asyncio.run(cache.principal(_token(settings, tmp_path, sub="bob")))
    assert other.user_id == "bob"
    assert len(cache) == 2


def test_an_expired_token_is_refused_even_when_cached(
    settings: AuthSettings, keys: KeySet, tmp_path: Path
) -> None:
    cache = VerifiedTokens(keys, settings, ttl_s=3600)
    token = _token(settings, tmp_path, ttl_s=1)
    assert asyncio.run(cache.principal(token)).user_id == "alice"
    assert len(cache) == 1
    exp = time.time() + 1.0  # at the latest
    wait_until(lambda: time.time() > exp + 0.05, 5, "the token expires")
    with pytest.raises(Unauthorized) as refused:
        asyncio.run(cache.principal(token))
    assert refused.value.details["reason"] == "token expired"
    assert len(cache) == 0


def test_refusals_are_never_kept(settings: AuthSettings, keys: KeySet, tmp_path: Path) -> None:
    cache = VerifiedTokens(keys, settings)
    forged = _token(settings, tmp_path)[:-4] + "AAAA"
    for _ in range(2):
        with pytest.raises(Unauthorized) as refused:
            asyncio.run(cache.principal(forged))
        assert refused.value.details["reason"] == "invalid signature"
    assert len(cache) == 0


def test_a_verification_is_reused_for_at_most_ttl_s(
    settings: AuthSettings, keys: KeySet, tmp_path: Path
) -> None:
    clock = _Clock()
    cache = VerifiedTokens(keys, settings, ttl_s=10, clock=clock)
    token = _token(settings, tmp_path)
    first = asyncio.run(cache.principal(token))
    clock.now += 9.9
    assert asyncio.run(cache.principal(token)) is first
    clock.now += 0.2  # past ttl_s: verified again
    again = asyncio.run(cache.principal(token))
    assert again == first and again is not first


def test_ttl_zero_verifies_every_request(
    settings: AuthSettings, keys: KeySet, tmp_path: Path
) -> None:
    cache = VerifiedTokens(keys, settings, ttl_s=0)
    token = _token(settings, tmp_path)
    first = asyncio.run(cache.principal(token))
    assert asyncio.run(cache.principal(token)) is not first
    assert len(cache) == 0


def test_the_cache_is_bounded(settings: AuthSettings, keys: KeySet, tmp_path: Path) -> None:
    cache = VerifiedTokens(keys, settings, max_tokens=2)
    tokens = [_token(settings, tmp_path, sub=f"user-{i}") for i in range(3)]
    first = asyncio.run(cache.principal(tokens[0]))
    for token in tokens[1:]:
        asyncio.run(cache.principal(token))
    assert len(cache) == 2
    # The least recently used (the first) was dropped: verified anew.
    assert asyncio.run(cache.principal(tokens[0])) is not first
