"""``options.budget``: the wire form of a task's LM budget (enforced by :mod:`rlm.lm.budget`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from rlm.models.base import INTEGRAL, WireModel

__all__ = ["Budget"]


class Budget(WireModel):
    """``options.budget`` (extension): limits on one task's LM calls. Unset = no limit."""

    lm_calls: Annotated[int, Field(ge=0, le=10_000_000), INTEGRAL] | None = None
    tokens: Annotated[int, Field(ge=0, le=10**12), INTEGRAL] | None = None
    cost_usd: float | None = Field(default=None, ge=0, le=1e9)
