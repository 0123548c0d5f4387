"""The Ray edge of RLM Hypervisor: the only package of ``rlm`` that imports ``ray``."""

from __future__ import annotations

from rlm.runtime.hypervisor import Hypervisor, connect

__all__ = ["Hypervisor", "connect"]
