"""The proxy guard: slow and abusive clients meet it in Serve's proxy, never a replica.

Ray Serve's HTTP proxy (uvicorn) forwards a request to a replica as soon as its head has
arrived and streams the body after it; the replica's slot (``max_ongoing_requests``) is held
until the body ends. 600 clients that send a head and never a body therefore held every slot
of two replicas, and nothing answered. Serve 2.60 exposes no header or body timeout and no
connection cap; it does run ASGI middleware in the proxy, from the callback named by
``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH``, in the proxy's process before its server starts.

:func:`proxy_middlewares` is that callback. It installs, in the proxy process:

* :class:`~serve_app.guard.protocol.GuardedProtocol` as uvicorn's HTTP protocol (wrapping the
  one uvicorn picks): per-client and total connection caps, a request-head timeout;
* :class:`~serve_app.guard.asgi.ProxyGuard` in front of the proxy's router: the body read in
  full within a timeout before a replica is involved, refusals of over-cap connections, a
  keep-alive request cap, and the error envelope (with the request id, and an execute's
  ``taskId``) when a replica dies or Serve answers in plain text.

The limits are the ``RLM_SERVER__*`` settings in the proxy's environment. ``rlm serve`` sets
the variable (:func:`enable`) before it starts Ray, so every Ray process inherits it; on a
cluster, set ``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=serve_app.guard:proxy_middlewares``
in the environment of every node (see the README's operations section).
"""

from __future__ import annotations

import logging
import os
from collections.abc import MutableMapping
from typing import Any, Final

from starlette.middleware import Middleware

from rlm.config import ServerSettings
from serve_app.guard.asgi import ProxyGuard
from serve_app.guard.book import ConnectionBook
from serve_app.guard.protocol import GuardedProtocol

__all__ = ["PROXY_CALLBACK", "PROXY_CALLBACK_ENV", "enable", "proxy_middlewares"]

log = logging.getLogger("rlm.api.guard")

#: Serve's variable naming the proxy callback.
PROXY_CALLBACK_ENV: Final = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
#: This module's callback, as Serve imports it.
PROXY_CALLBACK: Final = "serve_app.guard:proxy_middlewares"
_PROTOCOL: Final = "serve_app.guard.protocol:GuardedProtocol"


def enable(environ: MutableMapping[str, str] | None = None) -> None:
    """Name the guard as Serve's proxy callback in ``environ`` (default ``os.environ``).

    Call before ``ray.init`` starts a local Ray: its processes inherit the environment. A
    callback already named there (an operator's own) is kept.
    """
    env = os.environ if environ is None else environ
    env.setdefault(PROXY_CALLBACK_ENV, PROXY_CALLBACK)


def _server_settings() -> ServerSettings:
    from rlm.config import get_settings

    try:
        return get_settings().server
    except Exception:  # the proxy must start even if unrelated settings are broken
        log.exception("could not read the RLM_ settings; the proxy guard uses its defaults")
        return ServerSettings()


def proxy_middlewares(settings: ServerSettings | None = None) -> list[Middleware]:
    """Serve's proxy callback: install the guard in this (proxy) process.

    Args:
        settings: The limits; by default the ``RLM_SERVER__*`` environment.

    Returns:
        The ASGI middleware Serve wraps its proxy in.
    """
    import uvicorn.config
    from uvicorn.importer import import_from_string

    from serve_app.tls import harden_proxy

    # Every server TLS context this proxy makes is TLS 1.3+ (a no-op for plain HTTP).
    harden_proxy()
    server = settings or _server_settings()
    book = ConnectionBook(
        max_connections=server.max_connections,
        max_per_client=server.max_connections_per_client,
        max_requests=server.keep_alive_max_requests,
    )
    protocols: dict[str, Any] = uvicorn.config.HTTP_PROTOCOLS
    current = protocols.get("auto", "")
    if current != _PROTOCOL:
        GuardedProtocol.inner_class = import_from_string(current)
        protocols["auto"] = _PROTOCOL
    GuardedProtocol.book = book
    GuardedProtocol.header_timeout_s = server.header_timeout_s
    log.info(
        "proxy guard: header %gs, body %gs, %d connections (%d per client), %d requests each",
        server.header_timeout_s,
        server.body_timeout_s,
        server.max_connections,
        server.max_connections_per_client,
        server.keep_alive_max_requests,
    )
    return [
        Middleware(
            ProxyGuard,
            book=book,
            body_timeout_s=server.body_timeout_s,
            max_body_bytes=server.max_body_bytes,
        )
    ]
