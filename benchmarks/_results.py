"""``benchmarks/results.json``: every figure of a run, machine-readable, and the comparison of
two runs (``python -m benchmarks --compare OLD.json``), so a regression shows before it lands.

A figure's *bounds* are the strings its suite prints (``"<= 1.5x"``, ``"3x"``, ``">= 100/s"``,
``"<= 500 ms"``): a bound without an operator is a ceiling ("must not exceed"); ``x`` compares
the figure's ratio against its baseline, a unit compares what was measured (``ours``, converted
between ``s`` and ``ms``). ``report`` and ``—`` bound nothing.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Change", "check_bound", "compare", "format_changes", "load", "write"]

_BOUND = re.compile(r"^\s*(<=|>=|≤|≥)?\s*([0-9]+(?:\.[0-9]+)?)\s*(x|ms|s|MiB|/s)?\s*$")
#: A change of the ratio larger than this (relative) is called out.
NOISE = 0.10


def check_bound(bound: str, row: dict[str, Any]) -> bool | None:
    """Whether ``row`` keeps ``bound`` (``None``: the bound is not a number to check)."""
    match = _BOUND.match(str(bound))
    if match is None:
        return None
    op, value, unit = match.group(1) or "<=", float(match.group(2)), match.group(3) or "x"
    measured = _measured(row, unit)
    if measured is None:
        return None
    return measured >= value if op in (">=", "≥") else measured <= value


def _measured(row: dict[str, Any], unit: str) -> float | None:
    if unit == "x":
        return float(row["ratio"])
    own = str(row.get("unit", ""))
    ours = float(row["ours"])
    if unit == own or (unit == "/s" and own.endswith("/s")):
        return ours
    if (unit, own) == ("ms", "s"):
        return ours * 1000
    if (unit, own) == ("s", "ms"):
        return ours / 1000
    return None


def _higher_is_better(row: dict[str, Any]) -> bool:
    goal = str(row.get("goal", "")).lstrip()
    if goal.startswith((">=", "≥")):
        return True
    if _BOUND.match(goal) is None:
        # A figure only reported (no bound to read a direction from): a rate is better higher.
        unit = str(row.get("unit", ""))
        return unit.endswith("/s") or unit.startswith("per ")
    return False


@dataclass(frozen=True, slots=True)
class Change:
    """One figure in two runs.

    Attributes:
        figure: Its name.
        old: Its ratio in the old run (``None``: new figure).
        new: Its ratio in this run (``None``: no longer measured).
        relative: ``new / old - 1``, signed so that positive is *worse*.
        keeps_limit: Whether this run keeps the figure's limit (``None``: nothing to check).
        keeps_goal: Whether this run meets the figure's goal.
    """

    figure: str
    old: float | None
    new: float | None
    relative: float | None
    keeps_limit: bool | None
    keeps_goal: bool | None

    @property
    def regressed(self) -> bool:
        """Worse than the old run by more than the noise, or now past its limit."""
        return self.keeps_limit is False or (self.relative is not None and self.relative > NOISE)


def compare(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    """Each figure of ``new`` (then those only in ``old``) against ``old``."""
    before = {row["figure"]: row for row in old.get("figures", [])}
    changes = []
    for row in new.get("figures", []):
        previous = before.pop(row["figure"], None)
        relative = None
        if previous is not None and float(previous["ratio"]) > 0:
            relative = float(row["ratio"]) / float(previous["ratio"]) - 1
            if _higher_is_better(row):
                relative = -relative
        changes.append(
            Change(
                row["figure"],
                None if previous is None else float(previous["ratio"]),
                float(row["ratio"]),
                relative,
                check_bound(row.get("limit", ""), row),
                check_bound(row.get("goal", ""), row),
            )
        )
    changes.extend(
        Change(name, float(r["ratio"]), None, None, None, None) for name, r in before.items()
    )
    return changes


def format_changes(changes: list[Change]) -> str:
    """A table: figure, old and new ratio, change, goal / limit, and a verdict."""
    lines = [f"{'figure':<58} {'old':>8} {'new':>8} {'change':>8}  verdict"]
    for c in changes:
        old = "—" if c.old is None else f"{c.old:.3f}"
        new = "—" if c.new is None else f"{c.new:.3f}"
        change = "—" if c.relative is None else f"{c.relative:+.0%}"
        if c.new is None:
            verdict = "gone"
        elif c.keeps_limit is False:
            verdict = "PAST LIMIT"
        elif c.regressed:
            verdict = "worse"
        elif c.relative is not None and c.relative < -NOISE:
            verdict = "better"
        else:
            verdict = "same" if c.old is not None else "new"
        if c.keeps_goal is not None and c.new is not None:
            verdict += ", goal met" if c.keeps_goal else ", goal not met"
        lines.append(f"{c.figure[:58]:<58} {old:>8} {new:>8} {change:>8}  {verdict}")
    return "\n".join(lines)


def write(
    path: Path, figures: list[dict[str, Any]], machine: dict[str, Any], argv: list[str]
) -> None:
    """Write a run's figures with what they were measured on."""
    document = {
        "command": " ".join(["python -m benchmarks", *argv]),
        "commit": _commit(),
        "finishedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "loadAverage": list(os.getloadavg()),
        "machine": machine,
        "figures": figures,
    }
    path.write_text(json.dumps(document, indent=1) + "\n")


def load(path: Path) -> dict[str, Any]:
    """A results file written by :func:`write`."""
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def _commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None
