"""The Ray Serve deployment of the API, and the application ``serve run`` starts.

``serve run serve_app.deployment:app`` (or ``serve deploy serve_app/config.yaml``) works as well
as ``rlm serve``.
"""

from __future__ import annotations

from typing import Any

from ray import serve

from rlm.config import Settings, get_settings
from rlm.logs import route_rlm_logs_to_serve, serve_logging_config
from rlm.runtime import connect

__all__ = ["RLMApi", "build_app"]


@serve.deployment(
    name="rlm-api",
    max_ongoing_requests=256,
    health_check_period_s=10,
    health_check_timeout_s=30,
    graceful_shutdown_timeout_s=20,
    ray_actor_options={"num_cpus": 0},
)
@serve.ingress()
class RLMApi:
    """One replica of the API: a FastAPI app over the shared engine."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        route_rlm_logs_to_serve()
        self._hv = connect(settings=settings)

    def __serve_build_asgi_app__(self) -> Any:
        from serve_app.app import create_app

        return create_app(self._settings, self._hv)

    async def check_health(self) -> None:
        """Serve's health check: the engine answers."""
        await self._hv.running_async()


def build_app(settings: Settings | None = None) -> Any:
    """The Serve application, sized from ``settings.server``."""
    settings = settings or get_settings()
    server = settings.server
    deployment = RLMApi.options(  # type: ignore[attr-defined]
        max_ongoing_requests=server.max_ongoing_requests,
        autoscaling_config={
            "min_replicas": server.min_replicas,
            "max_replicas": server.max_replicas,
            "target_ongoing_requests": server.target_ongoing_requests,
        },
        logging_config=serve_logging_config(settings),
        # Serve's own default (2 s); the tests shorten it, as every stop waits at least once.
        graceful_shutdown_wait_loop_s=server.shutdown_poll_s,
    )
    return deployment.bind(settings)


def __getattr__(name: str) -> Any:
    # ``serve run serve_app.deployment:app`` imports ``app``; build it then, not at import.
    if name == "app":
        return build_app()
    raise AttributeError(name)
