"""The notebooks are committed as documentation, without outputs or execution counts (a run
leaves them in the file; ``tests/api/test_notebooks.py`` runs them on a copy in memory)."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook, new_output

from tests.shared_data import REPO_ROOT

NOTEBOOKS = REPO_ROOT / "notebooks"
EXPECTED = {"01_quickstart.ipynb", "02_quotas_and_tenants.ipynb", "03_oolong_research_run.ipynb"}


def executed_cells(path: Path) -> list[str]:
    """What makes a notebook not clean: each cell that has outputs or an execution count."""
    book = nbformat.read(path, as_version=4)
    nbformat.validate(book)
    problems = []
    for index, cell in enumerate(book.cells):
        if cell.get("outputs"):
            problems.append(f"{path.name} cell {index}: has outputs")
        if cell.get("execution_count") is not None:
            problems.append(f"{path.name} cell {index}: has an execution count")
    return problems


def test_the_notebooks_are_there() -> None:
    assert {p.name for p in NOTEBOOKS.glob("*.ipynb")} >= EXPECTED


def test_committed_notebooks_have_no_outputs_or_execution_counts() -> None:
    problems = [p for path in sorted(NOTEBOOKS.glob("*.ipynb")) for p in executed_cells(path)]
    assert not problems, "clear them (Jupyter: Edit > Clear All Outputs):\n" + "\n".join(problems)


def test_the_check_finds_an_executed_cell(tmp_path: Path) -> None:
    cell = new_code_cell("print(1)", execution_count=1)
    cell.outputs = [new_output("stream", name="stdout", text="1\n")]
    path = tmp_path / "run.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("x = 1"), cell]), path)
    assert executed_cells(path) == [
        "run.ipynb cell 1: has outputs",
        "run.ipynb cell 1: has an execution count",
    ]
