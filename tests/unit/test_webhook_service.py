"""Registering webhooks: tenancy, scopes, validation, the SSRF check, secrets and rotation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rlm.admission import Viewer
from rlm.errors import Forbidden, InvalidInput, WebhookNotFound
from rlm.models import SecretRotation, WebhookCreate, WebhookUpdate, parse_model
from rlm.webhooks.addresses import BlockedAddress
from rlm.webhooks.service import WebhookService
from rlm.webhooks.settings import WebhookSettings
from rlm.webhooks.store import WebhookStore

ALICE = Viewer("alice", "acme")
BOB = Viewer("bob", "acme")
ADMIN = Viewer("root", "acme", admin=True)
OTHER_ADMIN = Viewer("boss", "globex", admin=True)


class Clock:
    now = 2_000_000.0

    def __call__(self) -> float:
        return self.now


class Names:
    """A resolver whose answers the test changes."""

    def __init__(self) -> None:
        self.table = {
            "localhost": ["127.0.0.1"],
            "hooks.example": ["93.184.216.34"],
            "intranet.example": ["10.1.2.3"],
            "metadata.example": ["169.254.169.254"],
        }

    def resolve(self, host: str, port: int) -> list[str]:
        if host not in self.table:
            raise OSError("Name or service not known")
        return self.table[host]


def _service(tmp_path: Path, **settings: Any) -> tuple[WebhookService, Clock]:
    clock = Clock()
    ws = WebhookSettings(**settings)
    return WebhookService(
        WebhookStore(tmp_path / "s.db", ws, clock=clock), ws, Names(), clock=clock
    ), clock


def _create(url: str = "https://hooks.example/h", **fields: Any) -> WebhookCreate:
    return parse_model(WebhookCreate, {"url": url, "events": ["task.completed"], **fields})


def test_a_user_manages_its_own_webhooks(tmp_path: Path) -> None:
    service, clock = _service(tmp_path)
    created = service.create(ALICE, _create(description="CI"))
    assert created.secret.startswith("whsec_")
    assert (created.owner_id, created.org_id, created.scope, created.status) == (
        "alice",
        "acme",
        "user",
        "active",
    )
    public = service.get(ALICE, created.webhook_id)
    assert "secret" not in public.to_wire()  # shown once, at creation
    assert [w.webhook_id for w in service.list_webhooks(ALICE)] == [created.webhook_id]
    clock.now += 10
    changed = service.update(
        ALICE,
        created.webhook_id,
        parse_model(WebhookUpdate, {"events": ["quota.threshold_exceeded", "task.completed"]}),
    )
    assert changed.events == ["quota.threshold_exceeded", "task.completed"]
    assert changed.description == "CI"  # not given: not changed
    assert changed.updated_at.timestamp() == clock.now
    cleared = service.update(
        ALICE, created.webhook_id, parse_model(WebhookUpdate, {"description": None})
    )
    assert cleared.description is None
    disabled = service.update(ALICE, created.webhook_id, WebhookUpdate(enabled=False))
    assert disabled.status == "disabled" and disabled.disabled_reason == "disabled by alice"
    service.delete(ALICE, created.webhook_id)
    with pytest.raises(WebhookNotFound):
        service.get(ALICE, created.webhook_id)
    assert service.list_webhooks(ALICE) == []


def test_other_tenants_see_nothing_and_get_404(tmp_path: Path) -> None:
    service, _ = _service(tmp_path)
    mine = service.create(ALICE, _create()).webhook_id
    for viewer in (BOB, OTHER_ADMIN, Viewer("alice-2", "acme")):
        assert service.list_webhooks(viewer) == []
        for call in (
            lambda v: service.get(v, mine),
            lambda v: service.update(v, mine, WebhookUpdate(enabled=False)),
            lambda v: service.delete(v, mine),
            lambda v: service.rotate(v, mine, SecretRotation()),
            lambda v: service.deliveries(v, mine),
            lambda v: service.ping(v, mine),
        ):
            with pytest.raises(WebhookNotFound) as raised:
                call(viewer)
            assert raised.value.details == {"webhookId": mine}
    with pytest.raises(WebhookNotFound):
        service.get(ALICE, "wh_does_not_exist")
    assert service.get(ALICE, mine).status == "active"  # nothing above changed it


def test_an_org_admin_sees_its_org_and_alone_creates_org_wide_webhooks(tmp_path: Path) -> None:
    service, _ = _service(tmp_path)
    alices = service.create(ALICE, _create()).webhook_id
    with pytest.raises(Forbidden) as refused:
        service.create(ALICE, _create(scope="org"))
    assert refused.value.details["field"] == "scope"
    with pytest.raises(Forbidden):
        service.create(Viewer("root", None, admin=True), _create(scope="org"))  # no org claim
    org_wide = service.create(ADMIN, _create(scope="org"))
    assert (org_wide.scope, org_wide.org_id) == ("org", "acme")
    assert {w.webhook_id for w in service.list_webhooks(ADMIN)} == {alices, org_wide.webhook_id}
    assert service.get(ADMIN, alices).owner_id == "alice"  # the org's admin manages members'
    for viewer in (ALICE, BOB, OTHER_ADMIN):
        with pytest.raises(WebhookNotFound):
            service.get(viewer, org_wide.webhook_id)
    assert [w.webhook_id for w in service.list_webhooks(ALICE)] == [alices]


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("https://intranet.example/h", "private"),
        ("https://metadata.example/h", "metadata"),
        ("https://10.0.0.1/h", "private"),
        ("https://localhost/h", "loopback"),
    ],
)
def test_private_addresses_are_refused_at_registration(tmp_path: Path, url: str, kind: str) -> None:
    service, _ = _service(tmp_path)
    with pytest.raises(BlockedAddress) as raised:
        service.create(ALICE, _create(url))
    assert raised.value.details["field"] == "url"
    assert raised.value.details["addressClass"] == kind
    assert service.list_webhooks(ALICE) == []


def test_loopback_and_http_need_the_operator_settings(tmp_path: Path) -> None:
    strict, _ = _service(tmp_path / "a")
    with pytest.raises(InvalidInput, match="scheme must be https"):
        strict.create(ALICE, _create("http://hooks.example/h"))
    dev, _ = _service(tmp_path / "b", allow_http=True, allow_loopback=True)
    assert dev.create(ALICE, _create("http://localhost:8080/h")).url == "http://localhost:8080/h"
    with pytest.raises(BlockedAddress):
        dev.create(ALICE, _create("http://intranet.example/h"))  # loopback only, not private


def test_a_changed_url_is_checked_again(tmp_path: Path) -> None:
    service, _ = _service(tmp_path)
    hook = service.create(ALICE, _create()).webhook_id
    with pytest.raises(BlockedAddress):
        service.update(ALICE, hook, WebhookUpdate(url="https://intranet.example/h"))
    with pytest.raises(InvalidInput, match="does not resolve"):
        service.update(ALICE, hook, WebhookUpdate(url="https://nowhere.example/h"))
    assert service.get(ALICE, hook).url == "https://hooks.example/h"


def test_webhooks_per_owner_are_limited(tmp_path: Path) -> None:
    service, _ = _service(tmp_path, max_webhooks_per_owner=2)
    for _ in range(2):
        service.create(ALICE, _create())
    with pytest.raises(InvalidInput) as raised:
        service.create(ALICE, _create())
    assert raised.value.details == {"field": "webhooks", "limit": 2}
    service.create(BOB, _create())  # per owner


def test_rotation_keeps_the_old_secret_signing_for_the_grace_period(tmp_path: Path) -> None:
    service, clock = _service(tmp_path)
    created = service.create(ALICE, _create())
    rotated = service.rotate(ALICE, created.webhook_id, SecretRotation(grace_seconds=3600))
    assert rotated.secret != created.secret
    assert rotated.previous_secret_expires_at is not None
    assert rotated.previous_secret_expires_at.timestamp() == clock.now + 3600
    row = service._store.webhook(created.webhook_id)
    assert row is not None
    assert [s.secret for s in row.secrets] == [rotated.secret, created.secret]
    # A second rotation within the grace keeps both older ones, never extending them.
    clock.now += 60
    third = service.rotate(ALICE, created.webhook_id, SecretRotation(grace_seconds=7200))
    row = service._store.webhook(created.webhook_id)
    assert row is not None
    assert [(s.secret, s.expires_at) for s in row.secrets] == [
        (third.secret, None),
        (rotated.secret, clock.now + 7200),
        (created.secret, clock.now - 60 + 3600),
    ]
    # Grace 0: the new secret alone signs.
    last = service.rotate(ALICE, created.webhook_id, SecretRotation(grace_seconds=0))
    row = service._store.webhook(created.webhook_id)
    assert row is not None and [s.secret for s in row.secrets] == [last.secret]
    assert last.previous_secret_expires_at is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"events": ["task.completed"]}, "url"),
        ({"url": "https://hooks.example/h"}, "events"),
        ({"url": "https://hooks.example/h", "events": []}, "events"),
        ({"url": "https://hooks.example/h", "events": ["task.started"]}, "events[0]"),
        (
            {"url": "https://hooks.example/h", "events": ["task.completed", "task.completed"]},
            "events",
        ),
        ({"url": "https://hooks.example/h", "events": ["task.completed"], "scope": "all"}, "scope"),
        ({"url": "https://hooks.example/h", "events": ["task.completed"], "x": 1}, "x"),
        ({"url": 5, "events": ["task.completed"]}, "url"),
        ({"url": "https://h/" + "a" * 3000, "events": ["task.completed"]}, "url"),
    ],
)
def test_invalid_bodies_name_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_model(WebhookCreate, body)
    assert raised.value.details["field"] == field


def test_ping_queues_a_test_event_for_that_webhook_only(tmp_path: Path) -> None:
    service, _ = _service(tmp_path)
    one = service.create(ALICE, _create()).webhook_id
    two = service.create(ALICE, _create()).webhook_id
    delivery_id = service.ping(ALICE, one)
    [delivery] = service.deliveries(ALICE, one)
    assert (delivery.delivery_id, delivery.event, delivery.status) == (
        delivery_id,
        "webhook.test",
        "pending",
    )
    assert service.deliveries(ALICE, two) == []
    assert service.delivery(ALICE, one, delivery_id).attempts == 0
    with pytest.raises(WebhookNotFound) as raised:
        service.delivery(ALICE, one, "dlv_nope")
    assert raised.value.details == {"webhookId": one, "deliveryId": "dlv_nope"}
    with pytest.raises(WebhookNotFound):
        service.delivery(ALICE, two, delivery_id)  # another webhook's delivery
