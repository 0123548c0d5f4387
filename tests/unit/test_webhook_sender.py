"""One delivery attempt against a real receiver on loopback: the guard at connection time
(DNS rebinding), timeouts, Retry-After, redirects not followed, a receiver that is down."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest

from rlm.testing import WebhookReceiver
from rlm.webhooks.addresses import AddressPolicy
from rlm.webhooks.lifecycle import AttemptResult
from rlm.webhooks.sender import WebhookSender

DEV = AddressPolicy(allow_http=True, allow_loopback=True)
HEADERS = {"content-type": "application/json", "webhook-id": "msg_1"}


class Names:
    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table

    def resolve(self, host: str, port: int) -> list[str]:
        if host not in self.table:
            raise OSError("Name or service not known")
        return self.table[host]


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as r:
        yield r


def _send(sender: WebhookSender, url: str, body: bytes = b'{"a":1}') -> AttemptResult:
    async def go() -> AttemptResult:
        try:
            return await sender.send(url, HEADERS, body)
        finally:
            await sender.close()

    return asyncio.run(go())


def test_a_delivery_arrives_with_its_headers_and_body(receiver: WebhookReceiver) -> None:
    sender = WebhookSender(DEV, Names({"hooks.test": ["127.0.0.1"]}))
    result = _send(sender, f"http://hooks.test:{receiver.port}/in")
    assert result.ok and result.status_code == 200 and result.error is None
    [hit] = receiver.received
    assert hit.body == b'{"a":1}' and hit.method == "POST" and hit.path == "/in"
    assert hit.webhook_id == "msg_1" and hit.headers["host"] == f"hooks.test:{receiver.port}"


def test_a_name_that_now_resolves_to_a_private_address_is_refused(
    receiver: WebhookReceiver,
) -> None:
    # Registered while it resolved to loopback; at delivery it says 10.0.0.7 (rebinding).
    sender = WebhookSender(DEV, Names({"hooks.test": ["10.0.0.7"]}))
    result = _send(sender, f"http://hooks.test:{receiver.port}/in")
    assert result.status_code is None and not result.ok
    assert result.error is not None and result.error.startswith("refused:")
    assert "private" in result.error
    mixed = WebhookSender(DEV, Names({"hooks.test": ["127.0.0.1", "169.254.169.254"]}))
    refused = _send(mixed, f"http://hooks.test:{receiver.port}/in")
    assert refused.error is not None and "metadata" in refused.error
    assert receiver.received == []


def test_a_refused_literal_is_never_connected_to(receiver: WebhookReceiver) -> None:
    strict = WebhookSender(AddressPolicy(allow_http=True), Names({}))
    result = _send(strict, f"http://127.0.0.1:{receiver.port}/in")
    assert result.error is not None and "loopback" in result.error
    https_only = WebhookSender(AddressPolicy(allow_loopback=True), Names({}))
    assert "scheme" in (_send(https_only, receiver.url).error or "")
    assert receiver.received == []


def test_a_hanging_receiver_is_cut_off_at_the_timeout(receiver: WebhookReceiver) -> None:
    receiver.hang()
    sender = WebhookSender(DEV, Names({}), timeout_s=0.3)
    result = _send(sender, receiver.url)
    assert result.status_code is None and result.error == "no answer within 0.3 s"
    assert receiver.holding == 1
    receiver.release()


def test_statuses_retry_after_and_redirects(receiver: WebhookReceiver) -> None:
    receiver.respond(429, retry_after="7")
    receiver.respond(302)
    receiver.respond(410)
    sender = WebhookSender(DEV, Names({}))
    slow = _send(sender, receiver.url)
    assert (slow.status_code, slow.retry_after_s, slow.error) == (429, 7.0, "HTTP 429")
    moved = _send(sender, receiver.url)
    assert moved.status_code == 302 and not moved.ok
    gone = _send(sender, receiver.url)
    assert gone.status_code == 410
    assert len(receiver.received) == 3  # the redirect was not followed


def test_a_receiver_that_is_down_is_a_failed_attempt() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = _send(WebhookSender(DEV, Names({})), f"http://127.0.0.1:{port}/in")
    assert result.status_code is None
    assert result.error is not None and result.error.startswith("cannot connect")
