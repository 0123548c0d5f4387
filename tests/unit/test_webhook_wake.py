"""Waking the delivery worker with a datagram; the caller hears when nobody listens."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from rlm.webhooks.wake import WakeListener, WakeSender, wake_address


def test_a_datagram_wakes_the_listener(tmp_path: Path) -> None:
    address = wake_address(tmp_path)  # Linux (the service's platform): an abstract socket
    assert address is not None and address.startswith("\0rlm-webhooks-")
    assert wake_address(tmp_path) == address and wake_address(tmp_path / "x") != address

    async def main() -> int:
        woken = asyncio.Event()
        wakes = 0

        def on_wake() -> None:
            nonlocal wakes
            wakes += 1
            woken.set()

        listener = WakeListener(address, on_wake)
        sender = WakeSender(address)
        try:
            assert all(sender.send() for _ in range(5))
            await asyncio.wait_for(woken.wait(), 10)
            with pytest.raises(OSError):
                WakeListener(address, on_wake)  # one worker per state directory
        finally:
            listener.close()
            sender.close()
        return wakes

    assert asyncio.run(main()) >= 1


def test_nobody_listening_is_reported(tmp_path: Path) -> None:
    sender = WakeSender(wake_address(tmp_path))
    assert sender.send() is False  # the caller falls back to the actor call
    sender.close()
    assert WakeSender(None).send() is False
