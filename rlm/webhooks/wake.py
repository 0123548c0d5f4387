"""Waking the delivery worker: one datagram on a Unix socket, a few microseconds.

The engine's core wakes the worker whenever it queues an event. An actor call would cost the
core a few hundred microseconds of CPU per task end (submitting it, then handling its reply);
a datagram to a socket in Linux's abstract namespace (no file, named after the state
directory) costs a system call. The worker runs on the core's node (it opens the same SQLite
file), so the socket is always local. Where there is no such socket (another OS, the worker
not up yet), :meth:`WakeSender.send` says so and the caller falls back to the actor call. A
lost wake-up is harmless: the worker also polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import sys
from collections.abc import Callable
from pathlib import Path

__all__ = ["WakeListener", "WakeSender", "wake_address"]


def wake_address(state_dir: Path) -> str | None:
    """The worker's wake socket for ``state_dir`` (abstract namespace), or ``None`` off Linux."""
    if not sys.platform.startswith("linux"):
        return None
    digest = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:24]
    return f"\0rlm-webhooks-{digest}"


class WakeSender:
    """Sends wake-ups to the worker's socket.

    Args:
        address: From :func:`wake_address` (``None``: every :meth:`send` answers ``False``).
    """

    def __init__(self, address: str | None) -> None:
        self._address = address
        self._sock: socket.socket | None = None
        if address is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.setblocking(False)

    def send(self) -> bool:
        """Wake the worker; ``False`` when nobody listens (use another way)."""
        if self._sock is None or self._address is None:
            return False
        try:
            self._sock.sendto(b"!", self._address)
        except BlockingIOError:
            return True  # its queue is full: it has wake-ups to read already
        except OSError:
            return False
        return True

    def close(self) -> None:
        """Close the socket."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class WakeListener:
    """The worker's end: calls ``on_wake`` on the running loop when woken.

    Args:
        address: From :func:`wake_address`.
        on_wake: Called (once per batch of datagrams) on the loop.

    Raises:
        OSError: The address is taken (another worker of the same state directory runs).
    """

    def __init__(self, address: str, on_wake: Callable[[], None]) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self._sock.bind(address)
        except OSError:
            self._sock.close()
            raise
        self._sock.setblocking(False)
        self._on_wake = on_wake
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._sock.fileno(), self._drain)

    def _drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while self._sock.recv(64):
                pass
        self._on_wake()

    def close(self) -> None:
        """Stop listening."""
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
