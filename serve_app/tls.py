"""HTTPS for the API: Ray Serve's proxy serves TLS 1.3 and nothing older, or nothing at all.

Serve 2.60 starts its proxy's uvicorn with the certificate and key of ``http_options``
(``ssl_certfile``, ``ssl_keyfile``) but offers no setting for the protocol versions, and
uvicorn builds its ``SSLContext`` with Python's default floor, TLS 1.2. Serve does run one
function of ours in each proxy process before its server starts: the one named by
``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH`` (meant to return ASGI middlewares), which
``rlm serve`` hands to Serve's controller, and so to its proxies, through
``controller_options.runtime_env``. :func:`harden_proxy` is that function: it raises the
floor of every server context uvicorn makes in the proxy to TLS 1.3. If it cannot (uvicorn
changed), it raises, the proxy does not start, and neither does the service: it never
silently serves TLS 1.2.

With TLS on, the port speaks nothing else: a plain HTTP request fails the handshake and the
connection is closed, without an answer.

Production (``RLM_ENV=production``) refuses to serve without TLS unless the operator states
that a proxy in front terminates it (``RLM_SERVER__BEHIND_TLS_PROXY=true``):
:func:`require_transport`.
"""

from __future__ import annotations

import os
import ssl
from typing import Any

from rlm.config import ServerSettings, Settings
from rlm.errors import InvalidInput

__all__ = [
    "MIN_TLS_VERSION",
    "PROXY_CALLBACK",
    "controller_options",
    "harden_proxy",
    "http_options",
    "require_transport",
]

#: The oldest protocol the API speaks.
MIN_TLS_VERSION = ssl.TLSVersion.TLSv1_3

#: The import path of :func:`harden_proxy`, for Serve's proxy callback variable.
# The proxy's one callback is the guard's (serve_app.guard), which applies harden_proxy first:
# TLS 1.3 and the guard's limits hold together.
PROXY_CALLBACK = "serve_app.guard:proxy_middlewares"

_CALLBACK_VARIABLE = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
_HARDENED = "_rlm_min_tls"


def harden_proxy() -> list[Any]:
    """Serve's proxy callback: every server ``SSLContext`` uvicorn makes here is TLS 1.3+.

    Returns:
        No middleware (Serve's callback contract: a list of Starlette middlewares).

    Raises:
        RuntimeError: uvicorn no longer builds its context where expected; the proxy (and the
            service) must not start rather than accept TLS 1.2.
    """
    import uvicorn.config

    original = getattr(uvicorn.config, "create_ssl_context", None)
    if original is None or not callable(original):
        raise RuntimeError("uvicorn.config.create_ssl_context is gone: cannot enforce TLS 1.3")
    if getattr(original, _HARDENED, False):
        return []

    def create_ssl_context(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        context: ssl.SSLContext = original(*args, **kwargs)
        context.minimum_version = MIN_TLS_VERSION
        return context

    setattr(create_ssl_context, _HARDENED, True)
    uvicorn.config.create_ssl_context = create_ssl_context
    return []


def _check_pair(server: ServerSettings) -> tuple[str, str] | None:
    """The certificate and key paths, after making sure they load together."""
    if server.tls_cert is None or server.tls_key is None:
        return None
    cert, key = str(server.tls_cert), str(server.tls_key)
    password = server.tls_key_password
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(
            cert, key, None if password is None else password.get_secret_value()
        )
    except (OSError, ssl.SSLError) as err:
        raise InvalidInput(
            f"the TLS certificate {cert} and key {key} cannot be loaded together: {err}",
            field="server.tls_cert",
        ) from None
    return cert, key


def http_options(server: ServerSettings) -> dict[str, Any]:
    """Serve's ``http_options`` for ``server``: host, port, timeout, and TLS when configured.

    Raises:
        InvalidInput: the certificate and key do not load together.
    """
    options: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "request_timeout_s": server.request_timeout_s,
        "keep_alive_timeout_s": server.keep_alive_timeout_s,
    }
    pair = _check_pair(server)
    if pair is not None:
        options["ssl_certfile"], options["ssl_keyfile"] = pair
        if server.tls_key_password is not None:
            options["ssl_keyfile_password"] = server.tls_key_password.get_secret_value()
    return options


def controller_options(server: ServerSettings) -> dict[str, Any] | None:
    """Serve's ``controller_options`` that make its proxies run :func:`harden_proxy`.

    ``None`` without TLS. Proxies inherit the controller's environment; a callback already
    set in this process's environment is refused rather than replaced.

    Raises:
        InvalidInput: another proxy callback is configured.
    """
    if server.tls_cert is None:
        return None
    given = os.environ.get(_CALLBACK_VARIABLE)
    if given and given != PROXY_CALLBACK:
        raise InvalidInput(
            f"{_CALLBACK_VARIABLE}={given} is set; with TLS the proxy runs {PROXY_CALLBACK}",
            field="server.tls_cert",
        )
    return {"runtime_env": {"env_vars": {_CALLBACK_VARIABLE: PROXY_CALLBACK}}}


def require_transport(settings: Settings) -> None:
    """Refuse to serve production traffic over plain HTTP.

    Raises:
        InvalidInput: ``env`` is ``production``, no certificate is configured, and no proxy
            in front is said to terminate TLS.
    """
    server = settings.server
    if settings.env != "production" or server.tls_cert is not None or server.behind_tls_proxy:
        return
    raise InvalidInput(
        "production serves HTTPS only: give a certificate and key (rlm serve --tls-cert "
        "--tls-key, or RLM_SERVER__TLS_CERT and RLM_SERVER__TLS_KEY), or set "
        "RLM_SERVER__BEHIND_TLS_PROXY=true when a proxy in front terminates TLS",
        field="server.tls_cert",
    )
