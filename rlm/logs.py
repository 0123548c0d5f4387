"""Log output: plain lines for people, or one JSON object per line for log collectors.

``RLM_LOG_FORMAT=json`` switches both places the service logs from:

- the ``rlm serve`` process (and the CLI): :func:`configure_logging` puts a JSON formatter
  (``python-json-logger``) on the root handler;
- the API replicas: :func:`serve_logging_config` asks Ray Serve for JSON logs (Serve stamps
  every line written while a request is handled with its ``request_id`` — the same id the
  API answers in ``X-Request-ID`` and ``requestId``), and :func:`route_rlm_logs_to_serve`
  sends the ``rlm`` loggers through Serve's handlers so the service's own lines carry it too.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from rlm.config import Settings

__all__ = ["configure_logging", "route_rlm_logs_to_serve", "serve_logging_config"]

_FIELDS = "{asctime}{levelname}{name}{message}"


def configure_logging(log_format: str, level: int = logging.WARNING) -> None:
    """Give the root logger one stderr handler in ``log_format`` (``text`` or ``json``)."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(
            JsonFormatter(
                _FIELDS,
                style="{",
                rename_fields={"asctime": "timestamp", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)


def serve_logging_config(settings: Settings) -> dict[str, Any]:
    """The ``logging_config`` of the API deployment."""
    config: dict[str, Any] = {
        "encoding": "JSON" if settings.log_format == "json" else "TEXT",
        "enable_access_log": True,
    }
    if settings.log_dir is not None:
        config["logs_dir"] = str(settings.log_dir)
    return config


def route_rlm_logs_to_serve() -> None:
    """In a replica: the ``rlm`` and ``serve_app`` loggers write through Serve's handlers."""
    serve_logger = logging.getLogger("ray.serve")
    for name in ("rlm", "serve_app"):
        logger = logging.getLogger(name)
        logger.handlers = list(serve_logger.handlers)
        logger.propagate = False
        logger.setLevel(logging.INFO)
