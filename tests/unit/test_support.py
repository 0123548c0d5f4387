"""``wait_until`` returns the condition's value once it holds, and names it if it never does."""

from __future__ import annotations

import pytest

from tests.support import wait_until


def test_returns_the_first_true_value() -> None:
    answers = iter([None, 0, "", 7, 8])
    assert wait_until(lambda: next(answers), 5, "an answer", interval=0) == 7
    assert next(answers) == 8


def test_fails_naming_what_never_happened() -> None:
    calls: list[int] = []

    def never() -> bool:
        calls.append(1)
        return False

    with pytest.raises(pytest.fail.Exception, match="never: the moon turns blue"):
        wait_until(never, 0.05, "the moon turns blue", interval=0.01)
    assert len(calls) >= 2  # polled again after the first miss


def test_an_exception_in_the_condition_propagates() -> None:
    def broken() -> bool:
        raise KeyError("gone")

    with pytest.raises(KeyError):
        wait_until(broken, 5, "never reached")


def test_the_message_can_show_the_last_state_seen() -> None:
    seen = iter(range(100))
    last: list[int] = []

    def done() -> bool:
        last[:] = [next(seen)]
        return False

    with pytest.raises(pytest.fail.Exception, match=r"never: done, last seen \d+"):
        wait_until(done, 0.02, lambda: f"done, last seen {last[0]}", interval=0.005)
