"""The README's settings table is generated from the settings models and matches them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rlm.config import Settings
from rlm.settings_doc import markdown_table, settings_rows

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_table_is_the_generated_one() -> None:
    text = README.read_text()
    block = re.search(r"<!-- settings:start -->\n(.*?)<!-- settings:end -->", text, re.S)
    assert block is not None, "README lost its settings markers"
    assert block.group(1) == markdown_table(), "run `rlm config --markdown` into the README"


def test_every_setting_is_described_once() -> None:
    rows = settings_rows()
    names = [r.name for r in rows]
    assert len(names) == len(set(names))
    assert all(r.description for r in rows), [r.name for r in rows if not r.description]
    assert {"RLM_STATE_DIR", "RLM_AUTH__LEEWAY_S", "RLM_LM__BASE_URL", "RLM_LOG_FORMAT"} <= set(
        names
    )


@pytest.mark.parametrize(
    "row",
    [r for r in settings_rows() if "<NAME>" not in r.name and r.default.isdigit()],
    ids=lambda r: r.name,
)
def test_each_numeric_variable_is_read_under_its_name(
    row: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A value other than the default, set under the documented name, reaches the settings.
    name = row.name  # type: ignore[attr-defined]
    default = int(row.default)  # type: ignore[attr-defined]
    monkeypatch.setenv(name, str(default + 1))
    value: object = Settings()
    for part in name.removeprefix("RLM_").lower().split("__"):
        value = getattr(value, part)
    assert value == default + 1
