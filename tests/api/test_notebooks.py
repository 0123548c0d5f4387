"""The notebooks run headless (``nbclient``) against a live ``rlm serve``, as a reader runs them.

Each notebook reads the service's address and tokens from the environment (``RLM_BASE_URL``,
``RLM_API_KEY``, and for the tenants notebook ``ALICE_TOKEN`` and ``BOB_TOKEN``), which the test
sets for the kernel it starts. The kernel imports this checkout (``PYTHONPATH``), not whatever
else is installed. A cell that raises fails the test with its traceback; the outputs each
notebook exists to show (the snippet's result, its charts, the scores) are checked too.
"""

from __future__ import annotations

import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.api.served_oracle import OracleServe
from tests.shared_data import REPO_ROOT

pytestmark = pytest.mark.integration

NOTEBOOKS = REPO_ROOT / "notebooks"
READ = "rlm:execute rlm:read rlm:quota:read"
OPERATOR = "rlm:admin rlm:quota:manage rlm:quota:read rlm:execute rlm:read"
#: Each notebook's run, well under the suite's budget on two shared cores.
CELL_TIMEOUT_S = 180


def _run(path: Path) -> tuple[nbformat.NotebookNode, float]:
    book = nbformat.read(path, as_version=4)
    started = time.monotonic()
    NotebookClient(
        book,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    ).execute()
    return book, time.monotonic() - started


def _text(book: nbformat.NotebookNode) -> str:
    out = []
    for cell in book.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                out.append(output["text"])
            elif "text/plain" in output.get("data", {}):
                out.append(output["data"]["text/plain"])
    return "\n".join(out)


def _images(book: nbformat.NotebookNode) -> int:
    return sum(
        "image/png" in output.get("data", {})
        for cell in book.cells
        for output in cell.get("outputs", [])
    )


@pytest.fixture
def notebook_env(oracle_served: OracleServe, monkeypatch: pytest.MonkeyPatch) -> OracleServe:
    # The kernel inherits this process's environment.
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    monkeypatch.setenv("RLM_BASE_URL", oracle_served.base_url)
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    return oracle_served


def test_quickstart(notebook_env: OracleServe, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLM_API_KEY", notebook_env.token(scopes=READ, tier="enterprise"))
    book, took = _run(NOTEBOOKS / "01_quickstart.ipynb")
    text = _text(book)
    assert "Result: 15\n" in text
    assert "Result: 8390656 (expected 8390656), 1365 agent calls" in text
    assert "100.0 %" in text  # progress was watched to the end
    assert "TASK_NOT_FOUND" in text
    assert _images(book) == 2  # the fan-out tree, the per-level timings
    assert took < 120


def test_quotas_and_tenants(notebook_env: OracleServe, monkeypatch: pytest.MonkeyPatch) -> None:
    served = notebook_env
    monkeypatch.setenv(
        "RLM_API_KEY", served.token(sub="ops", scopes=OPERATOR, tier="admin", org="corp")
    )
    monkeypatch.setenv("ALICE_TOKEN", served.token(sub="alice", scopes=READ, tier="power_user"))
    monkeypatch.setenv("BOB_TOKEN", served.token(sub="bob", scopes=READ, tier="user"))
    book, took = _run(NOTEBOOKS / "02_quotas_and_tenants.ipynb")
    text = _text(book)
    assert "eng's ancestors: ['corp']" in text
    assert "research: [('alice', 12000), ('bob', None)]" in text
    assert "QUOTA_EXCEEDED" in text and "'period': 'daily', 'limit': 1000" in text
    assert "FORBIDDEN" in text  # alice cannot read the org tree
    assert _images(book) == 1
    assert took < 120


def test_oolong_research_run(notebook_env: OracleServe, monkeypatch: pytest.MonkeyPatch) -> None:
    """By default the run asks the service's own model: here (as the notebook's setup says)
    the fake OOLONG oracle the service's ``RLM_LM__*`` environment points at."""
    monkeypatch.setenv("RLM_API_KEY", notebook_env.token(scopes=READ, tier="enterprise"))
    monkeypatch.delenv("OOLONG_MODEL", raising=False)
    monkeypatch.setenv("OOLONG_QUESTIONS", "8")
    notebook_env.lm.reset_stats()
    book, took = _run(NOTEBOOKS / "03_oolong_research_run.ipynb")
    text = _text(book)
    assert "model: the service default (RLM_LM__MODEL)" in text
    assert "24 answers over 1 window(s)" in text  # 8 questions in each of the 3 modes
    # The oracle behind the service answers every mode right: the harness is sound.
    for mode in ("rlm", "direct", "map-reduce"):
        assert f"{mode:>10}: accuracy 100.0%, errors 0" in text, text
    assert _images(book) == 2
    # Every question went to the endpoint of the service's environment, its default model
    # (an RLM's sub-calls to the provider's sub-model).
    asked = {r.model for r in notebook_env.lm.requests}
    default, sub = notebook_env.env["RLM_LM__MODEL"], notebook_env.env["RLM_LM__SUB_MODEL"]
    assert default in asked and asked <= {default, sub}, asked
    assert took < 120


def test_oolong_research_run_on_a_model_named_in_the_environment(
    notebook_env: OracleServe, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``OOLONG_MODEL`` names the endpoint's model the run asks (a real one in a real run)."""
    monkeypatch.setenv("RLM_API_KEY", notebook_env.token(scopes=READ, tier="enterprise"))
    # Offered by the service's provider (its sub-model), and not its default model.
    monkeypatch.setenv("OOLONG_MODEL", notebook_env.env["RLM_LM__SUB_MODEL"])
    monkeypatch.setenv("OOLONG_QUESTIONS", "2")
    notebook_env.lm.reset_stats()
    book, _ = _run(NOTEBOOKS / "03_oolong_research_run.ipynb")
    text = _text(book)
    assert "model: fake-sub-model" in text
    assert "6 answers over 1 window(s)" in text
    for mode in ("rlm", "direct", "map-reduce"):
        assert f"{mode:>10}: accuracy 100.0%, errors 0" in text, text
    # Every call of every mode (an RLM's sub-calls too) asked the model the environment named.
    asked = [r.model for r in notebook_env.lm.requests]
    assert asked and set(asked) == {"fake-sub-model"}, sorted(set(asked))
