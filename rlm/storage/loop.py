"""One background event loop for the ``async`` read method and fsspec's backends.

fsspec's async file systems (s3fs, gcsfs) bind their HTTP sessions to an event loop. The
storage service keeps exactly one, on a daemon thread, so every connector shares it and
:meth:`EventLoopThread.close` can close the sessions on the loop that owns them.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["EventLoopThread"]

T = TypeVar("T")


class EventLoopThread:
    """An asyncio loop running on its own thread, started on first use.

    Args:
        name: The thread's name.
    """

    def __init__(self, name: str = "rlm-storage-loop") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The running loop (started now if it was not).

        Raises:
            RuntimeError: after :meth:`close`.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("the storage event loop is closed")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def _run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                thread = threading.Thread(target=_run, name=self._name, daemon=True)
                thread.start()
                ready.wait()
                self._loop, self._thread = loop, thread
            return self._loop

    @property
    def started(self) -> bool:
        """Whether the loop has been started and not closed."""
        return self._loop is not None

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run a coroutine on the loop and wait for its result.

        Args:
            coro: The coroutine.
            timeout: Seconds to wait; the coroutine is cancelled after that.

        Raises:
            RuntimeError: when called from the loop's own thread (it would deadlock).
            TimeoutError: when ``timeout`` passes first.
        """
        loop = self.loop
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("EventLoopThread.run called from its own loop")
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def close(self, timeout: float = 5.0) -> None:
        """Stop the loop and join its thread; pending tasks are cancelled first."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
            self._closed = True
        if loop is None or thread is None:
            return

        async def _drain() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await loop.shutdown_default_executor()

        # Closing anyway on a timeout: a hung task must not block shutdown.
        with contextlib.suppress(TimeoutError, RuntimeError):
            asyncio.run_coroutine_threadsafe(_drain(), loop).result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        if not thread.is_alive():
            loop.close()
