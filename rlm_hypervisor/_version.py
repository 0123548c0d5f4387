"""The SDK's version (the distribution's: the SDK ships with the server it speaks to)."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
