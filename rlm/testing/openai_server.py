"""An OpenAI-compatible LM server on loopback: a stand-in for a paid LM API in tests and demos.

:class:`FakeLMServer` speaks the real OpenAI wire protocol (``POST /v1/chat/completions``,
``GET /v1/models``, OpenAI's error bodies), so the real ``openai`` client, sync or async, talks
to it unchanged; only the words are fake. Replies are deterministic (see
:mod:`rlm.testing.responders`), ``usage`` follows a documented token rule (see
:mod:`rlm.testing.tokens`), and a test can inject faults (429/500/503 with ``Retry-After``,
stalls) and read what the server saw (:meth:`FakeLMServer.stats`, :attr:`FakeLMServer.requests`).

It runs uvicorn on a background thread with its own event loop; handlers are async, so hundreds
of concurrent requests each wait out their latency together.

A chat completion is answered in this order:

1. a stall queued by :meth:`~FakeLMServer.stall_next` (the request hangs, then goes on);
2. a failure queued by :meth:`~FakeLMServer.fail_next` (whatever the request is);
3. ``Authorization: Bearer <api_key>`` (401 ``invalid_api_key``), unless ``api_key`` is None;
4. the body: malformed (400), ``stream: true`` or ``n > 1`` (400, not supported);
5. the model (404 ``model_not_found``), the prompt against ``context_window`` (400
   ``context_length_exceeded``);
6. the responder's text, cut to ``max_tokens``; then ``latency_s``; then 200.

Example:
    >>> from openai import OpenAI
    >>> with FakeLMServer(latency_s=0.05) as server:                       # doctest: +SKIP
    ...     client = OpenAI(base_url=server.url, api_key="test-key")
    ...     reply = client.chat.completions.create(
    ...         model="fake-model", messages=[{"role": "user", "content": "hi"}])
    ...     reply.choices[0].message.content
    'echo: 8f434346 2'

As a separate process (prints its URL, serves until SIGTERM or SIGINT)::

    python -m rlm.testing.openai_server --port 8011 --latency-ms 100
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rlm.testing.faults import FaultQueue
from rlm.testing.responders import TENANT_HEADER, ChatRequest, Responder, echo
from rlm.testing.stats import Meter, ServerStats
from rlm.testing.tokens import count_prompt_tokens, count_tokens, truncate_to_tokens
from rlm.testing.wire import Refusal, completion_body, model_body, parse_chat_request

__all__ = ["DEFAULT_MODELS", "FakeLMServer", "main"]

DEFAULT_MODELS = ("fake-model", "fake-sub-model")

_START_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 10.0


class _ThreadedUvicorn(uvicorn.Server):
    """uvicorn on a background thread: says when it listens, and on which loop."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.failure: BaseException | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.loop = asyncio.get_running_loop()
        self.ready.set()

    def run_in_thread(self) -> None:
        try:
            self.run()  # signal handlers are installed only on the main thread
        except BaseException as exc:  # uvicorn answers a failed bind with SystemExit
            self.failure = exc
        finally:
            self.ready.set()  # also wakes start() when startup failed

    @property
    def port(self) -> int:
        port: int = self.servers[0].sockets[0].getsockname()[1]
        return port


@dataclass(frozen=True, slots=True)
class _Running:
    server: _ThreadedUvicorn
    thread: threading.Thread
    closing: asyncio.Event
    port: int


class FakeLMServer:
    """An OpenAI-compatible chat completion server on loopback, for tests and demos.

    Args:
        responder: Decides each completion's text; :func:`~rlm.testing.responders.echo` when
            None.
        latency_s: Seconds each successful completion waits before answering (settable while
            running).
        api_key: The bearer token requests must carry; None accepts any or none.
        models: The models it serves; any other answers 404.
        context_window: Prompt tokens allowed (see :mod:`rlm.testing.tokens`); None for no
            limit.
        omit_usage: Answer without ``usage`` (settable while running).
        history: How many received requests and arrival times to keep.
        host: Interface to listen on.
        port: Port to listen on; 0 picks a free one.

    Example:
        >>> with FakeLMServer(responder=scripted(["4"])) as server:           # doctest: +SKIP
        ...     server.fail_next(1, status=429, retry_after_s=0.1)
        ...     ...  # a client with retries sees one 429, then "4"
        ...     assert server.stats().refused == {429: 1}
    """

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        latency_s: float = 0.0,
        api_key: str | None = "test-key",
        models: Sequence[str] = DEFAULT_MODELS,
        context_window: int | None = None,
        omit_usage: bool = False,
        history: int = 10_000,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._responder = responder or echo
        self.latency_s = latency_s
        self._api_key = api_key
        self._models = tuple(models)
        self._context_window = context_window
        self.omit_usage = omit_usage
        self._host = host
        self._port = port
        self._meter = Meter(history)
        self._faults = FaultQueue()
        self._lifecycle = threading.Lock()
        self._running: _Running | None = None
        self._closing = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeLMServer:
        """Start serving; returns once the server accepts connections.

        Raises:
            RuntimeError: If it is already running or could not start (e.g. port in use).
        """
        with self._lifecycle:
            if self._running is not None:
                raise RuntimeError("FakeLMServer is already running")
            config = uvicorn.Config(
                self._app(),
                host=self._host,
                port=self._port,
                log_config=None,  # leave the host process's logging alone
                access_log=False,
                lifespan="off",
                timeout_graceful_shutdown=2,
            )
            server = _ThreadedUvicorn(config)
            closing = asyncio.Event()  # bound to the server's loop on first wait
            thread = threading.Thread(
                target=server.run_in_thread, name="fake-lm-server", daemon=True
            )
            self._closing = closing
            thread.start()
            if not server.ready.wait(_START_TIMEOUT_S) or not server.started:
                server.should_exit = True
                thread.join(_STOP_TIMEOUT_S)
                raise RuntimeError(
                    f"FakeLMServer could not start on {self._host}:{self._port}"
                ) from server.failure
            self._running = _Running(server, thread, closing, server.port)
            return self

    def stop(self) -> None:
        """Stop serving and join the server thread; stalled requests are cut short (503)."""
        with self._lifecycle:
            running, self._running = self._running, None
            if running is None:
                return
            server = running.server
            server.should_exit = True
            if server.loop is not None:
                with contextlib.suppress(RuntimeError):  # the loop has already closed
                    server.loop.call_soon_threadsafe(running.closing.set)
            running.thread.join(_STOP_TIMEOUT_S)
            if running.thread.is_alive():
                server.force_exit = True
                running.thread.join(_STOP_TIMEOUT_S)

    def __enter__(self) -> FakeLMServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The base URL for an OpenAI client: ``http://127.0.0.1:PORT/v1``.

        Raises:
            RuntimeError: If the server is not running.
        """
        running = self._running
        if running is None:
            raise RuntimeError("FakeLMServer is not running; call start() first")
        return f"http://{self._host}:{running.port}/v1"

    # -- behaviour ---------------------------------------------------------------------------

    @property
    def latency_s(self) -> float:
        """Seconds each successful completion waits before answering."""
        return self._latency_s

    @latency_s.setter
    def latency_s(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("latency_s must be >= 0")
        self._latency_s = float(seconds)  # one reference swap: safe from any thread

    def fail_next(self, n: int, status: int = 429, retry_after_s: float | None = None) -> None:
        """Answer the next ``n`` chat completions with ``status`` (queued after earlier ones).

        Args:
            n: How many requests fail.
            status: An HTTP error status: 429, 500 and 503 are worded as OpenAI words them.
            retry_after_s: Sent as ``Retry-After`` (and ``retry-after-ms``) when given.

        Raises:
            ValueError: If ``n`` is negative, ``status`` is not 400-599 or the delay negative.
        """
        if n < 0 or not 400 <= status <= 599:
            raise ValueError("fail_next needs n >= 0 and an error status (400-599)")
        if retry_after_s is not None and retry_after_s < 0:
            raise ValueError("retry_after_s must be >= 0")
        self._faults.add_failures(n, status, retry_after_s)

    def stall_next(self, n: int, seconds: float) -> None:
        """Make the next ``n`` chat completions hang ``seconds`` before being answered.

        Raises:
            ValueError: If ``n`` or ``seconds`` is negative.
        """
        if n < 0 or seconds < 0:
            raise ValueError("stall_next needs n >= 0 and seconds >= 0")
        self._faults.add_stalls(n, seconds)

    # -- measurement -------------------------------------------------------------------------

    def stats(self) -> ServerStats:
        """What the server measured since it was created or :meth:`reset_stats`."""
        return self._meter.snapshot()

    @property
    def requests(self) -> list[ChatRequest]:
        """The chat completion requests received (parsed), oldest first, the last ``history``."""
        return self._meter.received()

    def reset_stats(self) -> None:
        """Forget the measurements and received requests (queued faults stay queued)."""
        self._meter.reset()

    # -- HTTP --------------------------------------------------------------------------------

    def _app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat_completions, methods=["POST"]),
                Route("/v1/models", self._list_models, methods=["GET"]),
                Route("/v1/models/{model:path}", self._retrieve_model, methods=["GET"]),
            ],
            exception_handlers={HTTPException: _unknown_url},
        )

    async def _chat_completions(self, request: Request) -> Response:
        arrived = time.monotonic()
        tenant = request.headers.get(TENANT_HEADER)
        epoch = self._meter.arrive(arrived, tenant)
        status = 503  # what a handler cancelled by shutdown amounts to
        try:
            response = await self._complete(request)
            status = response.status_code
            return response
        finally:
            self._meter.leave(epoch, arrived, tenant, status)

    async def _complete(self, request: Request) -> Response:
        parsed: ChatRequest | Refusal
        try:
            parsed = parse_chat_request(await request.body(), request.headers)
            self._meter.receive(parsed)
        except Refusal as refusal:
            parsed = refusal
        try:
            stall = self._faults.take_stall()
            if stall is not None:
                await self._pause(stall)
            failure = self._faults.take_failure()
            if failure is not None:
                raise failure
            self._authenticate(request)
            if isinstance(parsed, Refusal):
                raise parsed
            return await self._answer(parsed)
        except Refusal as refusal:
            return refusal.response()

    async def _answer(self, chat: ChatRequest) -> Response:
        if chat.raw.get("stream"):
            raise Refusal(400, "FakeLMServer does not stream; send stream=false.", param="stream")
        if chat.raw.get("n") not in (None, 1):
            raise Refusal(400, "FakeLMServer answers one choice; send n=1.", param="n")
        self._require_model(chat.model)
        prompt_tokens = count_prompt_tokens(chat.messages)
        if self._context_window is not None and prompt_tokens > self._context_window:
            raise Refusal(
                400,
                f"This model's maximum context length is {self._context_window} tokens. "
                f"However, your messages resulted in {prompt_tokens} tokens. "
                "Please reduce the length of the messages.",
                code="context_length_exceeded",
                param="messages",
            )
        try:
            text = self._responder(chat)
        except Exception as exc:
            raise Refusal(
                500, f"The responder raised {exc!r}.", type="server_error", code="responder_error"
            ) from exc
        finish_reason = "stop"
        if chat.max_tokens is not None and count_tokens(text) > chat.max_tokens:
            text, finish_reason = truncate_to_tokens(text, chat.max_tokens), "length"
        if self.latency_s > 0:
            await self._pause(self.latency_s)
        return JSONResponse(
            completion_body(chat, text, finish_reason, prompt_tokens, usage=not self.omit_usage)
        )

    async def _pause(self, seconds: float) -> None:
        """Wait ``seconds``, or until the server stops (then answer 503 at once)."""
        try:
            async with asyncio.timeout(seconds):
                await self._closing.wait()
        except TimeoutError:
            return
        raise Refusal(
            503, "The server is shutting down.", type="server_error", code="service_unavailable"
        )

    async def _list_models(self, request: Request) -> Response:
        try:
            self._authenticate(request)
        except Refusal as refusal:
            return refusal.response()
        return JSONResponse({"object": "list", "data": [model_body(m) for m in self._models]})

    async def _retrieve_model(self, request: Request) -> Response:
        try:
            self._authenticate(request)
            self._require_model(request.path_params["model"])
        except Refusal as refusal:
            return refusal.response()
        return JSONResponse(model_body(request.path_params["model"]))

    def _authenticate(self, request: Request) -> None:
        if self._api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Refusal(
                401,
                "You didn't provide an API key. Send 'Authorization: Bearer <key>'.",
                code="invalid_api_key",
            )
        if token != self._api_key:
            raise Refusal(401, "Incorrect API key provided.", code="invalid_api_key")

    def _require_model(self, model: str) -> None:
        if model not in self._models:
            raise Refusal(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                code="model_not_found",
                param="model",
            )


async def _unknown_url(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    return Refusal(
        status, f"Unknown request URL: {request.method} {request.url.path}.", code="unknown_url"
    ).response()


def main(argv: Sequence[str] | None = None) -> int:
    """Serve a :class:`FakeLMServer` until SIGTERM or SIGINT; print its URL first.

    Args:
        argv: Command-line arguments (``sys.argv[1:]`` when None).

    Returns:
        The exit status (0 after a clean stop).
    """
    parser = argparse.ArgumentParser(
        prog="python -m rlm.testing.openai_server",
        description="An OpenAI-compatible stand-in for a paid LM API, on loopback.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--api-key", default="test-key", help="'' accepts any key")
    parser.add_argument("--model", action="append", help=f"repeatable; default {DEFAULT_MODELS}")
    parser.add_argument("--context-window", type=int, default=None)
    parser.add_argument("--omit-usage", action="store_true")
    parser.add_argument(
        "--oolong-oracle",
        metavar="DATA",
        default=None,
        help="answer as the OOLONG oracle labelling from DATA (rlm.testing.oolong_oracle)",
    )
    parser.add_argument(
        "--split-root",
        action="store_true",
        help="answer as the RLM benchmark's root, which splits its context into K sub-calls "
        "(rlm.testing.split_root)",
    )
    args = parser.parse_args(argv)
    responder: Responder | None = None
    if args.oolong_oracle is not None and args.split_root:
        parser.error("--oolong-oracle and --split-root are two models: name one")
    if args.split_root:
        from rlm.testing.split_root import split_root_responder

        responder = split_root_responder
    if args.oolong_oracle is not None:
        from rlm.eval.data import label_map, load_instances
        from rlm.testing.oolong_oracle import oolong_responder

        responder = oolong_responder(label_map(load_instances(args.oolong_oracle)))
    server = FakeLMServer(
        responder,
        latency_s=args.latency_ms / 1000,
        api_key=args.api_key or None,
        models=args.model or DEFAULT_MODELS,
        context_window=args.context_window,
        omit_usage=args.omit_usage,
        host=args.host,
        port=args.port,
    )
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    # Blocked before the server thread starts, so it inherits the mask and sigwait gets them.
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    with server:
        print(server.url, flush=True)
        signal.sigwait(stop_signals)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
