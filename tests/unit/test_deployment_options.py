"""The Serve deployment ``build_app`` makes carries the server settings that size and stop it
(built, not run: no Ray is started)."""

from __future__ import annotations

from typing import Any

from rlm.config import ServerSettings, Settings
from serve_app.deployment import build_app


def _schema(server: ServerSettings) -> Any:
    # The bound deployment of an application and its config are private to Serve; the config
    # is what the controller is given.
    return build_app(Settings(server=server))._bound_deployment._deployment_config


def test_a_stopping_replica_polls_for_requests_in_flight_as_set() -> None:
    default = _schema(ServerSettings())
    assert default.graceful_shutdown_wait_loop_s == 2.0  # Serve's own default, kept
    assert default.graceful_shutdown_timeout_s == 20.0
    short = _schema(ServerSettings(shutdown_poll_s=0.1))
    assert short.graceful_shutdown_wait_loop_s == 0.1
    # Still waits as long for requests in flight: only the poll changed.
    assert short.graceful_shutdown_timeout_s == 20.0
