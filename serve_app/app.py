"""``create_app(settings, hv)``: the FastAPI application of the HTTP API.

The app holds no state of its own: tasks, rate-limit counters and quotas live in the engine's
singleton actor, so every Serve replica answers alike.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

import rlm
from rlm.auth.keys import load_verification_keys
from rlm.auth.token_cache import VerifiedTokens
from rlm.config import Settings
from rlm.storage import StorageService
from serve_app.audit import AdminChanges
from serve_app.console import install_console
from serve_app.context import BodyLimit, RequestIds, install_error_handlers
from serve_app.headroom import RateHeadroom
from serve_app.openapi import install_openapi
from serve_app.routes import evaluations, health, quotas, security, storage, tasks, webhooks
from serve_app.security import LocalSecurity, Security

__all__ = ["API_PREFIX", "create_app"]

API_PREFIX = "/v1"


def create_app(settings: Settings, hv: Any) -> FastAPI:
    """Build the API.

    Args:
        settings: Service settings (auth keys are loaded from them once, here).
        hv: The engine (an :class:`rlm.Hypervisor`), or anything with its ``ask`` method.

    Returns:
        The FastAPI application, routes under ``/v1``.
    """
    # Swagger UI (/docs) and ReDoc (/redoc) from files this service serves itself: the docs
    # work on an air-gapped cluster.
    app = FastAPIOffline(
        title="RLM Hypervisor API",
        version=rlm.__version__,
        description=(
            "Recursive language-model workloads on Ray: tasks, quotas, storage, security, "
            "webhooks. Authorize with a bearer token from `rlm token` (or your operator's "
            "issuer)."
        ),
        docs_url="/docs",
        redoc_url="/redoc",
        openapi_url="/openapi.json",
        static_url="/docs-static",
    )
    install_openapi(app)
    app.state.settings = settings
    app.state.auth = settings.auth
    app.state.keys = load_verification_keys(settings.auth, settings.state_dir, settings.env)
    # Each bearer token verified once per ``token_cache_s``, not on every request.
    app.state.tokens = VerifiedTokens(
        app.state.keys, settings.auth, ttl_s=settings.auth.token_cache_s
    )
    app.state.hv = hv
    if settings.database_dsn is not None:
        from rlm.db.pool import configure_pools  # PostgreSQL only: psycopg imported lazily

        configure_pools(settings.database_pool_size)
    app.state.storage = StorageService(settings.storage_settings)
    # The security actor of the engine (batched events, policies); in-process without Ray.
    backend = (
        hv.security()
        if hasattr(hv, "security")
        else LocalSecurity(settings.state_dir, settings.database_dsn)
    )
    app.state.security = Security(backend)
    app.state.headroom = RateHeadroom()  # each caller's rate-limit room, as last reported
    app.state.engine_load = health.EngineLoad()
    app.state.evaluations = evaluations.Evaluations(settings)
    install_error_handlers(app)

    app.add_middleware(AdminChanges)
    app.add_middleware(BodyLimit, max_bytes=settings.server.max_body_bytes)
    app.add_middleware(RequestIds)  # added last: the outermost, so even a 413 carries an id
    app.include_router(health.router, prefix=API_PREFIX)
    app.include_router(tasks.router, prefix=API_PREFIX)
    app.include_router(storage.router, prefix=API_PREFIX)
    app.include_router(quotas.router, prefix=API_PREFIX)
    app.include_router(security.router, prefix=API_PREFIX)
    app.include_router(webhooks.router, prefix=API_PREFIX)
    app.include_router(evaluations.router, prefix=API_PREFIX)
    # The web console (static files; it calls the routes above with the user's token).
    install_console(app)
    return app
