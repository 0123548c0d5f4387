"""Every ``RLM_…`` setting as a table, generated from the settings models so it cannot drift.

Each row is one environment variable: its name (``RLM_`` + the field path joined with ``__``),
its default, and its description — the field's ``description`` or, failing that, its entry in
the ``Attributes:`` section of its model's docstring. ``rlm config --markdown`` prints the
table; the README's *Configuration* section is that output (``make docs`` writes it there), and
a test keeps them equal.

Example:
    >>> rows = settings_rows()
    >>> next(r for r in rows if r.name == "RLM_SERVER__PORT").default
    '8000'
"""

from __future__ import annotations

import enum
import inspect
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from rlm.config import Settings

__all__ = ["SettingRow", "markdown_table", "settings_rows", "write_readme_table"]

_ATTRIBUTE = re.compile(r"^(\s+)([A-Za-z_][A-Za-z0-9_]*): (.*)$")


@dataclass(frozen=True, slots=True)
class SettingRow:
    """One environment variable."""

    name: str
    default: str
    description: str


def _attributes(model: type[BaseModel]) -> dict[str, str]:
    """The ``Attributes:`` entries of ``model``'s docstring (Google style), joined to one line."""
    doc = inspect.getdoc(model) or ""
    lines = doc.splitlines()
    try:
        start = lines.index("Attributes:") + 1
    except ValueError:
        return {}
    entries: dict[str, str] = {}
    current: str | None = None
    indent = 0
    for line in lines[start:]:
        if line and not line.startswith(" "):
            break  # the next section
        match = _ATTRIBUTE.match(line)
        if match is not None and (current is None or len(match.group(1)) <= indent):
            indent, current = len(match.group(1)), match.group(2)
            entries[current] = match.group(3).strip()
        elif current is not None and line.strip():
            entries[current] += " " + line.strip()
    return entries


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The model classes an annotation names (``Model``, ``Model | None``, ``A | B``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _models_in(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [m for a in typing.get_args(annotation) for m in _models_in(a)]
    return []


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        try:
            value = field.default_factory()  # type: ignore[call-arg]
        except TypeError:
            return "—"
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    return _show(value)


def _show(value: Any) -> str:
    if value is None or isinstance(value, SecretStr):
        return "—"
    if isinstance(value, BaseModel):
        return "—"
    if isinstance(value, Path):
        home = Path.home()
        return f"`~/{value.relative_to(home)}`" if value.is_relative_to(home) else f"`{value}`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, enum.Enum):
        return f"`{value.value}`"
    if isinstance(value, str):
        return f"`{value}`" if value else '`""`'
    if isinstance(value, tuple | list):
        return "`" + str(list(value)).replace("'", '"') + "`" if value else "`[]`"
    if isinstance(value, dict):
        return "`{}`" if not value else f"`{value}`"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _rows(model: type[BaseModel], prefix: str, seen: set[str]) -> list[SettingRow]:
    notes = _attributes(model)
    rows: list[SettingRow] = []
    for name, field in model.model_fields.items():
        env = f"{prefix}{name.upper()}"
        description = (field.description or notes.get(name, "")).strip()
        annotation = field.annotation
        if typing.get_origin(annotation) is dict:
            # Named entries (``connectors``): one row for the map, then each kind's fields.
            rows.append(SettingRow(f"{env}__<NAME>__…", _default(field), description))
            for sub in _models_in(typing.get_args(annotation)[1]):
                rows += _rows(sub, f"{env}__<NAME>__", seen)
            continue
        nested = _models_in(annotation)
        if len(nested) == 1:
            rows += _rows(nested[0], f"{env}__", seen)
            continue
        if env in seen:
            continue  # a field several connector kinds share is listed once
        seen.add(env)
        rows.append(SettingRow(env, _default(field), description))
    return rows


def settings_rows() -> list[SettingRow]:
    """Every setting, in the order the models declare them."""
    return _rows(Settings, "RLM_", set())


def markdown_table() -> str:
    """The settings as a Markdown table (the README's *Configuration* table)."""
    lines = ["| Variable | Default | What it does |", "| --- | --- | --- |"]
    for row in settings_rows():
        text = row.description.replace("|", "\\|").replace("``", "`") or "—"
        lines.append(f"| `{row.name}` | {row.default} | {text} |")
    return "\n".join(lines) + "\n"


def write_readme_table(readme: Path) -> bool:
    """Put :func:`markdown_table` between the README's settings markers; whether it changed."""
    text = readme.read_text(encoding="utf-8")
    start, end = "<!-- settings:start -->\n", "<!-- settings:end -->"
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    updated = head + start + markdown_table() + end + tail
    if updated != text:
        readme.write_text(updated, encoding="utf-8")
    return updated != text
