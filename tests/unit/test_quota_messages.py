"""The sentence a quota refusal carries: amounts a person can read."""

from __future__ import annotations

from datetime import UTC, datetime

from rlm.quotas.admission import quota_message

RESET = datetime(2026, 12, 7, tzinfo=UTC)


def test_a_small_compute_hour_need_is_not_printed_as_zero() -> None:
    message = quota_message("org", "acme", "computeHours", "daily", 0.0, 0.0, 0.0028, RESET)
    assert "needs 0.0028 more" in message
    assert "0.00 more" not in message
    assert "resets at 2026-12-07T00:00:00Z" in message


def test_whole_and_large_amounts_keep_their_usual_form() -> None:
    message = quota_message("user", "alice", "agents", "weekly", 5000, 4999, 12, RESET)
    assert "has used 4,999 of its 5,000 agent calls this week (weekly quota)" in message
    assert "needs 12 more" in message
    hours = quota_message("team", "t1", "computeHours", "monthly", 10.5, 10.25, 1.125, RESET)
    assert "10.25 of its 10.50 compute hours this month" in hours
    assert "needs 1.12 more" in hours or "needs 1.13 more" in hours


def test_concurrency_names_what_running_tasks_hold() -> None:
    message = quota_message("user", "bob", "concurrentAgents", "daily", 4, 3, 2, RESET)
    assert message.startswith("user 'bob' may hold at most 4 agents at once")
    assert "running tasks hold 3 and this one needs 2" in message
