"""A task's event stream (``GET /tasks/{taskId}/events``): SSE decoding and reconnection.

:class:`SSEDecoder` reads ``text/event-stream`` lines (the WHATWG rules: ``field: value``,
``:`` comments, a blank line ends a message). :func:`stream_events` and
:func:`astream_events` turn a stream into :class:`~rlm.models.TaskEventMessage` objects and
keep it going: a dropped connection, a stream that ends before ``task.completed`` or a gateway
error is reconnected with ``Last-Event-ID`` set to the last event received, after the retry
policy's backoff (:mod:`rlm_hypervisor._retry`); ``max_retries`` failures in a row without an
event in between give up. Errors the API answers (404 ``TASK_NOT_FOUND``, 403...) are raised.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import ValidationError

from rlm.errors import InternalError
from rlm.models import TaskEventMessage
from rlm_hypervisor import _calls
from rlm_hypervisor._errors import error_from_response
from rlm_hypervisor._retry import backoff_s, retry_delay

__all__ = [
    "AsyncStream",
    "SSEDecoder",
    "ServerSentEvent",
    "Stream",
    "astream_events",
    "stream_events",
    "task_event",
]

#: Opens a streamed request (``httpx.Client.stream`` with the client's settings).
Stream = Callable[[_calls.Call[Any]], AbstractContextManager[httpx.Response]]
AsyncStream = Callable[[_calls.Call[Any]], AbstractAsyncContextManager[httpx.Response]]


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One SSE message: its ``event`` type (default ``message``), ``data`` and ``id``."""

    event: str
    data: str
    id: str | None = None
    retry: int | None = None


class SSEDecoder:
    """Decodes ``text/event-stream`` line by line.

    Example:
        >>> d = SSEDecoder()
        >>> [d.feed(line) for line in ["id: 1", "event: e", "data: {}", ""]][-1]
        ServerSentEvent(event='e', data='{}', id='1', retry=None)
    """

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self._retry: int | None = None

    def feed(self, line: str) -> ServerSentEvent | None:
        """Take one line (without its end); the message a blank line completes, if any."""
        if not line:
            if not self._data:
                self._event = ""
                return None
            message = ServerSentEvent(
                self._event or "message", "\n".join(self._data), self._id, self._retry
            )
            self._event, self._data = "", []
            return message
        if line.startswith(":"):
            return None  # a comment: the server's keep-alive
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id" and "\0" not in value:
            self._id = value
        elif field == "retry" and value.isdigit():
            self._retry = int(value)
        return None


def task_event(message: ServerSentEvent) -> TaskEventMessage:
    """The task event an SSE message carries (its ``data`` is the event's wire form).

    Raises:
        InternalError: the data is not a task event (a server of another version).
    """
    try:
        return TaskEventMessage.model_validate(json.loads(message.data), strict=False)
    except (ValueError, ValidationError) as err:
        raise InternalError(
            f"the event stream sent a message that is not a task event: {err}",
            {"event": message.event, "data": message.data[:1000]},
        ) from None


def _ended_early(task_id: str) -> httpx.RemoteProtocolError:
    return httpx.RemoteProtocolError(
        f"the event stream of task {task_id!r} kept ending before task.completed"
    )


def stream_events(
    stream: Stream,
    sleep: Callable[[float], None],
    max_retries: int,
    task_id: str,
    last_event_id: int | None = None,
    jitter: Callable[[], float] = random.random,
) -> Iterator[TaskEventMessage]:
    """The task's events from the one after ``last_event_id`` to ``task.completed``.

    Args:
        stream: Opens the streamed request.
        sleep: Pauses before a reconnection.
        max_retries: Failed attempts in a row (no event in between) before giving up.
        task_id: The task.
        last_event_id: Resume after this event (``None``: from the first).
        jitter: Draws the backoff's jitter (see :func:`~rlm_hypervisor._retry.backoff_s`).

    Raises:
        RLMError: the API refused (``TaskNotFound``, ``Forbidden``, ``RateLimited``...).
        httpx.TransportError: the connection kept failing.
    """
    after, attempt = last_event_id, 0
    while True:
        try:
            with stream(_calls.task_events(task_id, after)) as response:
                if not response.is_success:
                    response.read()
                    delay = retry_delay(
                        response,
                        attempt=attempt,
                        retries_left=max_retries - attempt,
                        idempotent=True,
                        rand=jitter(),
                    )
                    if delay is None:
                        raise error_from_response(response)
                else:
                    decoder = SSEDecoder()
                    for line in response.iter_lines():
                        message = decoder.feed(line)
                        if message is None:
                            continue
                        event = task_event(message)
                        after, attempt = event.id, 0
                        yield event
                        if event.terminal:
                            return
                    raise _ended_early(task_id)  # reconnected below, if allowed
        except httpx.TransportError:
            if attempt >= max_retries:
                raise
            delay = backoff_s(attempt, jitter())
        sleep(delay)
        attempt += 1


async def astream_events(
    stream: AsyncStream,
    sleep: Callable[[float], Any],
    max_retries: int,
    task_id: str,
    last_event_id: int | None = None,
    jitter: Callable[[], float] = random.random,
) -> AsyncIterator[TaskEventMessage]:
    """The asyncio twin of :func:`stream_events` (``sleep`` is awaited)."""
    after, attempt = last_event_id, 0
    while True:
        try:
            async with stream(_calls.task_events(task_id, after)) as response:
                if not response.is_success:
                    await response.aread()
                    delay = retry_delay(
                        response,
                        attempt=attempt,
                        retries_left=max_retries - attempt,
                        idempotent=True,
                        rand=jitter(),
                    )
                    if delay is None:
                        raise error_from_response(response)
                else:
                    decoder = SSEDecoder()
                    async for line in response.aiter_lines():
                        message = decoder.feed(line)
                        if message is None:
                            continue
                        event = task_event(message)
                        after, attempt = event.id, 0
                        yield event
                        if event.terminal:
                            return
                    raise _ended_early(task_id)  # reconnected below, if allowed
        except httpx.TransportError:
            if attempt >= max_retries:
                raise
            delay = backoff_s(attempt, jitter())
        await sleep(delay)
        attempt += 1
