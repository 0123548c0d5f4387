"""The web console: static files under ``/ui``, served by the API's own app.

The console is plain JavaScript modules and CSS committed in ``static/`` (no build step, no
CDN: it works on an air-gapped cluster). It holds no powers of its own: the browser signs in
with a bearer token pasted once (kept in the tab's session storage, never in a URL) and calls
the public ``/v1`` API with it, as any client would.

Its answers carry a strict Content-Security-Policy (scripts, styles and connections from this
origin only; no inline script, no frames), ``nosniff``, ``no-referrer`` and ``DENY`` framing;
the headers are added to ``/ui`` answers only, so ``/v1`` answers are unchanged.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Final

from fastapi import FastAPI
from starlette.responses import RedirectResponse
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CONSOLE_HEADERS", "CONSOLE_PATH", "ConsoleHeaders", "install_console", "static_dir"]

#: Where the console is served.
CONSOLE_PATH: Final = "/ui"

#: The security headers of every console answer. ``connect-src 'self'`` lets the page call
#: the API of the origin that served it and nothing else; ``blob:`` images and downloads are
#: the trajectory's JSONL, made in the page.
CONSOLE_HEADERS: Final[dict[str, str]] = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data: blob:; font-src 'self'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-cache",
}


def static_dir() -> Path:
    """The folder of the console's files (inside the installed package)."""
    return Path(str(resources.files("serve_app.console") / "static"))


class ConsoleHeaders:
    """ASGI middleware: adds :data:`CONSOLE_HEADERS` to the answers of paths under ``/ui``.

    Args:
        app: The application.
        prefix: The console's path.
    """

    def __init__(self, app: ASGIApp, prefix: str = CONSOLE_PATH) -> None:
        self.app = app
        self.prefix = prefix
        self._headers = [(k.lower().encode(), v.encode()) for k, v in CONSOLE_HEADERS.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path != self.prefix and not path.startswith(self.prefix + "/"):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k for k, _ in self._headers}
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message = {**message, "headers": [*kept, *self._headers]}
            await send(message)

        await self.app(scope, receive, with_headers)


def install_console(app: FastAPI) -> None:
    """Serve the console at ``/ui`` (``/ui`` itself redirects to ``/ui/``)."""

    @app.get(CONSOLE_PATH, include_in_schema=False)
    async def console_root() -> RedirectResponse:
        return RedirectResponse(CONSOLE_PATH + "/", status_code=308)

    app.mount(CONSOLE_PATH, StaticFiles(directory=static_dir(), html=True), name="console")
    app.add_middleware(ConsoleHeaders)
