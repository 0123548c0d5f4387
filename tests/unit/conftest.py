"""Unit tests run without Ray: using it here is a bug in the test or the code under test.

``pytest tests`` runs the API and integration suites first, in the same process, so a session
Ray may already be up when a unit test runs: refusing ``ray.init`` alone would not notice a
unit test that quietly uses that Ray. Every entry point a test could reach Ray through raises
instead, a call the code under test swallowed still fails the test, and Ray must be exactly as
initialised after the test as before it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import ray

__all__ = ["REFUSED", "RayGuard"]

REFUSED = ("init", "get", "put", "remote", "get_actor", "wait", "kill", "cancel", "shutdown")


@dataclass
class RayGuard:
    """What a unit test tried to do with Ray (``ray.<name>`` calls, in order)."""

    calls: list[str] = field(default_factory=list)


@pytest.fixture(autouse=True)
def no_ray(monkeypatch: pytest.MonkeyPatch) -> Iterator[RayGuard]:
    guard = RayGuard()

    def refuse(name: str) -> object:
        def refused(*args: object, **kwargs: object) -> None:
            guard.calls.append(name)
            raise RuntimeError(f"unit tests must not use Ray: ray.{name} was called")

        return refused

    was_initialized = ray.is_initialized()
    for name in REFUSED:
        monkeypatch.setattr(ray, name, refuse(name))
    yield guard
    assert not guard.calls, f"the test used Ray: ray.{', ray.'.join(guard.calls)}"
    assert ray.is_initialized() == was_initialized, "Ray was started or stopped by a unit test"
