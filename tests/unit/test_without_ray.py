"""The unit suite proves it never touches Ray, and the pure modules import without it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.shared_data import REPO_ROOT
from tests.unit.conftest import REFUSED, RayGuard

PACKAGES = ("rlm", "rlm_hypervisor", "serve_app")
# Ray at the edge: these modules (and everything under them) may import it.
RAY_EDGE = ("rlm.runtime", "serve_app.deployment")
# A script, not a module: importing it runs the CLI.
SCRIPTS = ("rlm.__main__",)


def _modules() -> list[str]:
    """Every module of our packages, found on disk (importing them here would import Ray)."""
    out = []
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            parts = path.relative_to(REPO_ROOT).with_suffix("").parts
            out.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return out


def _pure(module: str) -> bool:
    edge = any(module == e or module.startswith(e + ".") for e in RAY_EDGE)
    return not edge and module not in SCRIPTS


def test_every_ray_entry_point_is_refused(no_ray: RayGuard) -> None:
    import ray  # noqa: TID251 - the guard itself is under test

    for name in REFUSED:
        with pytest.raises(RuntimeError, match=f"ray.{name} was called"):
            getattr(ray, name)()
    assert no_ray.calls == list(REFUSED)
    no_ray.calls.clear()  # seen and expected: this test alone may call them


def test_the_pure_modules_import_with_ray_unimportable() -> None:
    pure = [m for m in _modules() if _pure(m)]
    assert {"rlm", "rlm.quotas.ledger", "rlm_hypervisor.client", "serve_app.app"} <= set(pure)
    assert not {"rlm.runtime.core", "serve_app.deployment", "rlm.__main__"} & set(pure)
    code = (
        "import importlib, sys\n"
        "sys.modules['ray'] = None  # any import of ray now raises ImportError\n"
        f"for name in {pure!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = [m for m in sys.modules if m.startswith('ray.')]\n"
        "assert not bad, bad[:5]\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
