"""The Ray edge of RLM Hypervisor: the only package of ``rlm`` that imports ``ray``.

The package itself imports Ray lazily (:class:`Hypervisor` and :func:`connect` on first use),
so its Ray-free modules (:mod:`rlm.runtime.discovery`) serve commands that must not load Ray.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rlm.runtime.hypervisor import Hypervisor, connect

__all__ = ["Hypervisor", "connect"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'rlm.runtime' has no attribute {name!r}")
    value = getattr(importlib.import_module("rlm.runtime.hypervisor"), name)
    globals()[name] = value  # the next access is a plain lookup
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
