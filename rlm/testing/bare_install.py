"""``pip install rlm-hypervisor`` with no extras, into a fresh virtual environment.

What a user of the SDK alone gets: the distribution built from a checkout and installed with its
base dependencies only (httpx, pydantic, standardwebhooks), resolved by pip from the package
index (pip's cache makes a repeat fast). The tests prove the SDK works there and Ray is absent;
``benchmarks/sdk_import.py`` times ``import rlm_hypervisor`` there.

Example:
    >>> from pathlib import Path
    >>> from rlm.testing.bare_install import bare_install
    >>> python = bare_install(Path("."), Path("/tmp/bare"))  # doctest: +SKIP
    >>> run_python(python, "import rlm_hypervisor", cwd=Path("/tmp"))  # doctest: +SKIP
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

__all__ = ["DISTRIBUTION_FILES", "bare_install", "bare_env", "run_python"]

#: What the distribution is built from (``pyproject.toml``'s packages and metadata).
DISTRIBUTION_FILES = ("pyproject.toml", "README.md", "rlm", "rlm_hypervisor", "serve_app")


def bare_env() -> dict[str, str]:
    """The environment for the bare interpreter: this process's, less what would leak the
    checkout or another environment into it (``PYTHONPATH``, ``VIRTUAL_ENV``, ``RLM_*``)."""
    drop = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")
    return {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("RLM_")}


def bare_install(source: Path, dest: Path, *, timeout_s: float = 600.0) -> Path:
    """Create a virtual environment under ``dest`` and ``pip install`` the checkout into it.

    The checkout's distribution files are copied first (no ``__pycache__``, no build output),
    so pip's in-tree build never writes into the checkout. pip resolves the base dependencies
    from the index as a user's ``pip install rlm-hypervisor`` does.

    Args:
        source: The repository root (holding ``pyproject.toml``).
        dest: An empty or absent directory for the copy and the environment.
        timeout_s: How long pip may take.

    Returns:
        The environment's ``python``.

    Raises:
        subprocess.CalledProcessError: pip failed (its output is in the exception).
    """
    src = dest / "src"
    src.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    for name in DISTRIBUTION_FILES:
        path = source / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    env_dir = dest / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            str(src),
        ],
        check=True,
        capture_output=True,
        text=True,
        env=bare_env(),
        cwd=dest,
        timeout=timeout_s,
    )
    return python


def run_python(
    python: Path, code: str, *, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -c code`` in ``cwd`` (outside the checkout, so only installed packages
    import), with :func:`bare_env` plus ``env``; never raises on a non-zero exit."""
    return subprocess.run(
        [str(python), "-c", code],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**bare_env(), **(env or {})},
        timeout=300,
    )


if __name__ == "__main__":  # pragma: no cover - a manual check: python -m rlm.testing.bare_install
    print(bare_install(Path.cwd(), Path(sys.argv[1])))
