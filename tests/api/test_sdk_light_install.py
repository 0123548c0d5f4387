"""``pip install rlm-hypervisor`` (no extras) is the SDK alone, and the API document's snippet
runs there as written against a live ``rlm serve``.

The checkout is installed into a fresh virtual environment by pip from the package index
(:mod:`rlm.testing.bare_install`; pip's cache makes it take seconds). Every command runs in an
empty directory outside the checkout, so only what was installed can be imported (``/tmp``
itself holds Ray's session directory, which Python would import as a namespace package ``ray``).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from rlm.testing.bare_install import bare_install, run_python
from tests.api.served_oracle import OracleServe
from tests.shared_data import REPO_ROOT, shared_file

pytestmark = pytest.mark.integration

#: Distributions the SDK must not pull in (the service's: the ``server`` extra).
SERVICE_ONLY = {
    "ray",
    "numpy",
    "pyarrow",
    "pyjwt",
    "cryptography",
    "fsspec",
    "s3fs",
    "gcsfs",
    "fastapi",
    "uvicorn",
    "aiohttp",
    "openai",
    "pydantic-settings",
    "pyyaml",
    "rich",
    "orjson",
}
#: Top-level modules that must stay unimported after ``import rlm_hypervisor``.
SERVICE_MODULES = ("ray", "numpy", "pyarrow", "jwt", "fsspec", "s3fs", "gcsfs", "fastapi", "yaml")


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The bare environment's python, and an empty directory to run it in."""
    root = tmp_path_factory.mktemp("bare-sdk")
    python = bare_install(REPO_ROOT, root)
    cwd = root / "cwd"
    cwd.mkdir()
    return python, cwd


def _installed(python: Path, cwd: Path) -> dict[str, str]:
    out = run_python(
        python,
        "import importlib.metadata as m, json\n"
        "print(json.dumps({d.metadata['Name'].lower(): d.version for d in m.distributions()}))",
        cwd=cwd,
    )
    assert out.returncode == 0, out.stderr
    names: dict[str, str] = json.loads(out.stdout)
    return {re.sub(r"[-_.]+", "-", k): v for k, v in names.items()}


def test_the_bare_install_is_the_sdk_and_its_few_dependencies(bare: tuple[Path, Path]) -> None:
    python, cwd = bare
    installed = _installed(python, cwd)
    assert {"rlm-hypervisor", "httpx", "pydantic", "standardwebhooks"} <= set(installed)
    assert not SERVICE_ONLY & set(installed), sorted(SERVICE_ONLY & set(installed))


def test_the_sdk_imports_and_ray_does_not(bare: tuple[Path, Path]) -> None:
    python, cwd = bare
    ray = run_python(python, "import ray", cwd=cwd)
    assert ray.returncode != 0
    assert "ModuleNotFoundError: No module named 'ray'" in ray.stderr
    code = (
        "import sys, rlm_hypervisor\n"
        "from rlm_hypervisor import AsyncRLMClient, RLMClient, RateLimited, webhooks\n"
        "assert rlm_hypervisor.__file__.startswith(sys.prefix), rlm_hypervisor.__file__\n"
        f"loaded = sorted({{m.split('.')[0] for m in sys.modules}} & set({SERVICE_MODULES!r}))\n"
        "print(loaded)\n"
    )
    out = run_python(python, code, cwd=cwd)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_server_extra_says_how_to_get_it(bare: tuple[Path, Path]) -> None:
    # The package ships the service's modules too; without the extra they fail on their own
    # dependencies, not on a missing part of ours.
    python, cwd = bare
    out = run_python(python, "import serve_app.deployment", cwd=cwd)
    assert out.returncode != 0
    assert "ModuleNotFoundError" in out.stderr


def _document_snippet() -> str:
    doc = shared_file("seed/rlm-hypervisor-api.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", doc, re.S)
    snippet = next(b for b in blocks if "from rlm_hypervisor import RLMClient" in b)
    assert 'print(f"Result: {result.output}")' in snippet
    return snippet


def test_the_documents_snippet_prints_result_15(
    bare: tuple[Path, Path], oracle_served: OracleServe
) -> None:
    python, cwd = bare
    snippet = _document_snippet()
    # The one edit a reader makes: their key for the placeholder. The address comes from
    # RLM_BASE_URL, as for any client pointed at a service of its own.
    assert snippet.count('"your-api-key"') == 1
    code = snippet.replace('"your-api-key"', repr(oracle_served.token(sub="snippet-user")))
    out = run_python(python, code, cwd=cwd, env={"RLM_BASE_URL": oracle_served.base_url})
    assert out.returncode == 0, out.stderr
    assert out.stdout == "Result: 15\n"


def test_the_rlm_command_says_which_extra_brings_the_service(bare: tuple[Path, Path]) -> None:
    python, cwd = bare
    out = subprocess.run(
        [str(python.parent / "rlm"), "serve"], capture_output=True, text=True, cwd=cwd, timeout=60
    )
    assert out.returncode == 1
    assert "pip install 'rlm-hypervisor[server]'" in out.stderr
    assert "Traceback" not in out.stderr
