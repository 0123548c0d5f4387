"""Helpers the test suites share: waiting on a condition with a deadline, never a bare sleep."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from rlm.auth.keys import load_signing_key
from rlm.auth.tokens import issue_token
from rlm.config import Settings

__all__ = ["ok_response", "wait_until"]

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    what: str | Callable[[], str],
    *,
    interval: float = 0.05,
) -> T:
    """Poll ``predicate`` until it returns a true value, and return that value.

    The deadline only bounds a wait that would otherwise hang: a test passes as soon as the
    condition holds, and fails (naming ``what``) only if it never does.

    Args:
        predicate: Called until its result is true; an exception it raises propagates.
        timeout: Seconds before giving up.
        what: The awaited condition, for the failure message ("the task runs"); a callable
            is asked at the deadline, so the message can show the last state seen.
        interval: Seconds between polls.

    Returns:
        The predicate's first true result.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            told = what() if callable(what) else what
            pytest.fail(f"waited {timeout:g}s, but never: {told}", pytrace=False)
        time.sleep(interval)


def ok_response(send: Callable[[], httpx.Response]) -> httpx.Response | None:
    """``send()``'s response if it is a 200; ``None`` if not yet or if it could not connect.

    Example:
        >>> wait_until(lambda: ok_response(lambda: httpx.get(url)), 60, "up")  # doctest: +SKIP
    """
    try:
        response = send()
    except httpx.HTTPError:
        return None
    return response if response.status_code == 200 else None


def state_dir_token(
    state_dir: Path,
    sub: str | None = None,
    scopes: str = "rlm:execute rlm:read",
    tier: str = "user",
    **claims: Any,
) -> str:
    """A token an ``rlm serve`` on ``state_dir`` accepts: signed with the key it keeps there
    (as ``rlm token`` makes one); ``sub`` defaults to a fresh user."""
    settings = Settings(state_dir=state_dir)
    key = load_signing_key(settings.auth, settings.state_dir, settings.env)
    return issue_token(
        sub or f"user-{uuid.uuid4().hex[:8]}",
        scopes.split(),
        tier,
        settings=settings.auth,
        key=key,
        **claims,
    )
