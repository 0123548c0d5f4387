"""Recording events: the one-call API, scrubbing, the batching buffer, policy edits."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from rlm.errors import InvalidInput
from rlm.models.security import SecurityPolicyPatch, SecurityPolicyUpdate, Violation
from rlm.security import EVENT_TYPES, install_sink, record_security_event, record_violations
from rlm.security.buffer import EventBuffer
from rlm.security.events import SecurityEventIn, digest, scrub
from rlm.security.policies import (
    DEFAULT_POLICIES,
    PolicySet,
    apply_patch,
    apply_put,
    default_policy,
    policy_changes,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


class _Sink:
    def __init__(self) -> None:
        self.events: list[SecurityEventIn] = []

    def emit(self, event: SecurityEventIn) -> None:
        self.events.append(event)


@pytest.fixture
def sink() -> Iterator[_Sink]:
    mine = _Sink()
    previous = install_sink(mine)
    yield mine
    install_sink(previous)


def test_record_security_event_goes_to_the_installed_sink(sink: _Sink) -> None:
    event = record_security_event(
        "sandbox.violation",
        message="cell exceeded its memory cap",
        org_id="acme",
        user_id="ada",
        details={"taskId": "t1", "apiToken": "tok-123", "nested": {"password": "p"}},
    )
    assert sink.events == [event]
    assert (event.category, event.severity) == ("sandbox", "high")
    assert event.details == {
        "taskId": "t1",
        "apiToken": "[redacted]",
        "nested": {"password": "[redacted]"},
    }
    with pytest.raises(ValueError, match="unknown security event type"):
        record_security_event("made.up", message="x")


def test_every_type_has_a_category_and_default_severity() -> None:
    assert set(EVENT_TYPES) >= {
        "auth.unauthorized",
        "auth.forbidden",
        "rate.limited",
        "quota.refused",
        "policy.violation",
        "admin.change",
        "sandbox.violation",
    }


def test_scrub_bounds_and_digest() -> None:
    assert scrub({"Authorization": "Bearer x", "x": "y" * 5000})["Authorization"] == "[redacted]"
    assert len(scrub({"x": "y" * 5000})["x"]) == 1000
    deep: object = "leaf"
    for _ in range(20):
        deep = {"k": deep}
    flat = str(scrub(deep))
    assert "nested too deep" in flat and "leaf" not in flat
    assert digest(b"abc").startswith("sha256:ba7816bf")


def _violation(severity: str, policy: str = "input-injection") -> Violation:
    return Violation(
        policy_id=policy,
        category="input_validation",
        severity=severity,  # type: ignore[arg-type]
        message="m",
        detector="override",
    )


def test_record_violations_keeps_what_the_audit_policy_asks(sink: _Sink) -> None:
    assert (
        record_violations(
            [_violation("info")],
            source="execute",
            org_id="acme",
            user_id="ada",
            refused=False,
            min_severity="low",
        )
        is None
    )
    event = record_violations(
        [_violation("low"), _violation("critical", "input-secrets")],
        source="execute",
        org_id="acme",
        user_id="ada",
        refused=True,
    )
    assert event is not None and event.severity == "critical"
    assert [v["policyId"] for v in event.details["violations"]] == [
        "input-injection",
        "input-secrets",
    ]
    assert sink.events == [event]


def test_buffer_batches_off_the_caller_and_counts_drops() -> None:
    sent: list[list[SecurityEventIn]] = []
    gate = threading.Event()

    def send(batch: list[SecurityEventIn]) -> None:
        gate.wait(5)
        sent.append(batch)

    buffer = EventBuffer(send, flush_s=3600, batch=1000, max_pending=3)
    for i in range(5):
        buffer.emit(SecurityEventIn.of("rate.limited", message=str(i)))
    gate.set()
    buffer.flush()
    flat = [e for batch in sent for e in batch]
    assert [e.message for e in flat[:3]] == ["0", "1", "2"]
    assert flat[3].type == "audit.dropped" and flat[3].details == {"dropped": 2}
    buffer.close()


def test_buffer_sends_on_its_own_within_flush_s() -> None:
    arrived = threading.Event()
    buffer = EventBuffer(lambda batch: arrived.set(), flush_s=0.01)
    buffer.emit(SecurityEventIn.of("rate.limited", message="x"))
    assert arrived.wait(5)
    buffer.close()


# ------------------------------------------------------------------------- policies


def test_defaults_cover_every_category_and_locks() -> None:
    by_category = {p.category for p in DEFAULT_POLICIES}
    assert by_category == {"authentication", "authorization", "input_validation", "audit"}
    locked = {p.policy_id for p in DEFAULT_POLICIES if p.locked}
    assert locked == {"authn-bearer-jwt", "authz-scopes", "authz-tenancy", "audit-log"}
    listed = [p.policy_id for p in PolicySet().policies()]
    assert listed[0] == "authn-bearer-jwt" and listed[-1] == "audit-log"


def test_put_and_patch() -> None:
    base = default_policy("input-injection")
    patched = apply_patch(
        base, SecurityPolicyPatch(settings={"extraPhrases": ["abc"]}), by="ada", at=NOW
    )
    assert patched.settings == {"severity": "critical", "extraPhrases": ["abc"]}
    restored = apply_patch(
        patched, SecurityPolicyPatch(settings={"extraPhrases": None}), by="ada", at=NOW
    )
    assert restored.settings == base.settings
    put = apply_put(patched, SecurityPolicyUpdate(enabled=False, priority=3), by="bob", at=NOW)
    assert (put.enabled, put.priority, put.settings, put.updated_by) == (
        False,
        3,
        base.settings,
        "bob",
    )
    assert policy_changes(base, put) == {"enabled": [True, False], "priority": [70, 3]}
    for bad in (
        SecurityPolicyUpdate(policy_id="other", enabled=True, priority=1),
        SecurityPolicyUpdate(category="audit", enabled=True, priority=1),
        SecurityPolicyUpdate(enabled=True, priority=1, settings={"unknown": 1}),
        SecurityPolicyUpdate(enabled=True, priority=1, settings={"severity": "huge"}),
    ):
        with pytest.raises(InvalidInput):
            apply_put(base, bad, by="x", at=NOW)
    with pytest.raises(InvalidInput, match="cannot be disabled"):
        apply_patch(
            default_policy("authz-scopes"), SecurityPolicyPatch(enabled=False), by="x", at=NOW
        )
    with pytest.raises(InvalidInput):
        PolicySet().get("nope")


def test_the_package_exports_what_other_modules_call() -> None:
    import rlm.security

    assert rlm.security.__all__ == sorted(rlm.security.__all__)
    assert set(rlm.security.__all__) == {
        "DEFAULT_POLICIES",
        "EVENT_TYPES",
        "EventSink",
        "InputValidator",
        "PolicySet",
        "SecurityEventIn",
        "ValidationResult",
        "install_sink",
        "record_security_event",
        "record_violations",
        "validate_text",
    }
    for name in rlm.security.__all__:
        assert getattr(rlm.security, name) is not None
