"""The HTTP API of RLM Hypervisor on Ray Serve."""

from __future__ import annotations

from serve_app.app import API_PREFIX, create_app

__all__ = ["API_PREFIX", "create_app"]
