"""``import rlm_hypervisor`` in a bare install (issue 13), beside baselines from the same run.

The distribution is installed with no extras into a fresh virtual environment
(:mod:`rlm.testing.bare_install`), as ``pip install rlm-hypervisor`` gives a user of the SDK.
Each sample is a new interpreter that times its own import with ``time.perf_counter`` (so
interpreter start-up is left out), run from an empty directory so only installed packages
import; samples of the SDK and of the baselines are interleaved, so load on this shared machine
falls on both alike:

- ``sdk_import_ms``: median time of ``import rlm_hypervisor``; baseline: ``import httpx; from
  pydantic import BaseModel, TypeAdapter`` (the floor: the SDK's own dependencies, loaded as
  it uses them) in the same environment;
- ``sdk_import_process_ms``: wall time of ``python -c "import rlm_hypervisor"`` against
  ``python -c pass`` (what a script pays, start-up included).

Goal ≤ 150 ms, limit 500 ms for ``sdk_import_ms``.
"""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._report import figure
from rlm.testing.bare_install import bare_env, bare_install

__all__ = ["run"]

ROOT = Path(__file__).resolve().parents[1]
# The SDK's own dependencies, as it uses them (pydantic defers BaseModel's machinery until asked).
_FLOOR = "httpx; from pydantic import BaseModel, TypeAdapter"
_TIMED = "import time; t = time.perf_counter(); import {what}; print(time.perf_counter() - t)"


def _import_s(python: Path, what: str, cwd: Path) -> float:
    out = subprocess.run(
        [str(python), "-c", _TIMED.format(what=what)],
        cwd=cwd,
        env=bare_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip())


def _process_s(python: Path, code: str, cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run([str(python), "-c", code], cwd=cwd, env=bare_env(), check=True)
    return time.perf_counter() - started


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Install the SDK bare, then time its import against the baselines."""
    repeat = 7 if quick else 25
    with tempfile.TemporaryDirectory(prefix="rlm-bare-") as tmp:
        python = bare_install(ROOT, Path(tmp))
        cwd = Path(tmp) / "cwd"
        cwd.mkdir()
        # Warm the page cache and the bytecode caches once (a user's second import).
        _import_s(python, "rlm_hypervisor", cwd)
        _import_s(python, _FLOOR, cwd)
        sdk, floor, proc, bare = [], [], [], []
        for _ in range(repeat):
            sdk.append(_import_s(python, "rlm_hypervisor", cwd))
            floor.append(_import_s(python, _FLOOR, cwd))
            proc.append(_process_s(python, "import rlm_hypervisor", cwd))
            bare.append(_process_s(python, "pass", cwd))
    ours, base = statistics.median(sdk), statistics.median(floor)
    rows = [
        figure(
            "sdk_import_ms",
            ours * 1000,
            base * 1000,
            unit="ms",
            ratio=ours / base,
            goal="<= 150 ms",
            limit="500 ms",
            baseline_name=f"import {_FLOOR} (its dependencies), same venv",
            samples=repeat,
            # The fastest sample of each: closest to an idle machine when others share it.
            oursMinMs=round(min(sdk) * 1000, 1),
            baselineMinMs=round(min(floor) * 1000, 1),
        )
    ]
    p_ours, p_base = statistics.median(proc), statistics.median(bare)
    rows.append(
        figure(
            "sdk_import_process_ms",
            p_ours * 1000,
            p_base * 1000,
            unit="ms",
            ratio=p_ours / p_base,
            goal="report",
            limit="—",
            baseline_name="python -c pass, same venv",
            samples=repeat,
        )
    )
    return rows


if __name__ == "__main__":
    run()
