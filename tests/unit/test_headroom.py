"""``RateHeadroom``: the fast path of ``POST /execute`` only while the engine's last word on the
caller leaves room beyond what is in flight."""

from __future__ import annotations

from serve_app.headroom import RateHeadroom


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _rate(remaining: int, reset: int = 60) -> dict[str, str]:
    return {
        "RateLimit-Policy": "10;w=60",
        "RateLimit": f"limit=10, remaining={remaining}, reset={reset}",
    }


def test_an_unknown_caller_is_counted_first() -> None:
    room = RateHeadroom(_Clock())
    assert not room.claim("user:alice")
    room.record("user:alice", {})  # an answer without rate headers teaches nothing
    assert not room.claim("user:alice")


def test_room_is_shared_by_the_requests_in_flight() -> None:
    room = RateHeadroom(_Clock())
    room.record("user:alice", _rate(2))
    assert room.claim("user:alice")
    assert room.claim("user:alice")
    assert not room.claim("user:alice")  # two in flight use the two left
    room.release("user:alice")
    assert room.claim("user:alice")
    assert not room.claim("user:bob")  # per caller


def test_a_spent_limit_or_a_refusal_sends_requests_the_slow_way() -> None:
    room = RateHeadroom(_Clock())
    room.record("user:alice", _rate(5))
    room.record("user:alice", _rate(0))
    assert not room.claim("user:alice")
    room.record("user:alice", {**_rate(0, reset=12), "Retry-After": "12"})
    assert not room.claim("user:alice")


def test_a_figure_is_trusted_until_its_window_resets() -> None:
    clock = _Clock()
    room = RateHeadroom(clock)
    room.record("user:alice", _rate(3, reset=30))
    clock.now += 29.5
    assert room.claim("user:alice")
    room.release("user:alice")
    clock.now += 1.0
    assert not room.claim("user:alice")


def test_the_memory_is_bounded() -> None:
    room = RateHeadroom(_Clock(), max_callers=2)
    for name in ("a", "b", "c"):
        room.record(f"user:{name}", _rate(5))
    assert not room.claim("user:a")  # the oldest was forgotten
    assert room.claim("user:b") and room.claim("user:c")
