"""The labelled instances OOLONG-synth builds its windows from, and where to find them.

The default data set is OOLONG's validated TREC-coarse questions
(``trec_coarse_validated.jsonl``, one JSON object a line: ``input`` the question, ``label`` its
class among six). It lives beside the checkout in ``../shared/data/oolong/``; ``--data PATH``
or ``RLM_OOLONG_DATA`` point elsewhere. A file that is missing or malformed is refused with
:class:`~rlm.errors.InvalidInput` naming the path, before anything runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from rlm.errors import InvalidInput

__all__ = [
    "DATA_ENV",
    "DEFAULT_DATA",
    "Instance",
    "default_data_path",
    "label_map",
    "labels_of",
    "load_instances",
    "parse_instances",
]

#: The environment variable that names the data file when ``--data`` is not given.
DATA_ENV = "RLM_OOLONG_DATA"

#: The default data file, relative to the repository root.
DEFAULT_DATA = "../shared/data/oolong/trec_coarse_validated.jsonl"

_REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True, slots=True)
class Instance:
    """One labelled instance.

    Attributes:
        text: The instance's text, on one line (runs of whitespace become one space).
        label: Its gold label.
    """

    text: str
    label: str


def default_data_path(env: Mapping[str, str] | None = None) -> Path:
    """Where the data is when ``--data`` is not given.

    Args:
        env: The environment (default ``os.environ``).

    Returns:
        ``$RLM_OOLONG_DATA`` when set, else :data:`DEFAULT_DATA` under the repository root.
    """
    env = os.environ if env is None else env
    named = env.get(DATA_ENV)
    if named:
        return Path(named)
    return (_REPO_ROOT / DEFAULT_DATA).resolve()


def _one_line(text: str) -> str:
    return " ".join(text.split())


def parse_instances(rows: Iterable[object], source: str = "data") -> list[Instance]:
    """Instances from decoded rows (``{"input": str, "label": str, ...}``).

    Texts are put on one line. A text met twice must carry the same label both times (an
    oracle labels lines by their text); the second copy is dropped.

    Args:
        rows: The decoded JSON objects.
        source: What to name in errors (a path).

    Returns:
        The instances, in order, without duplicates.

    Raises:
        InvalidInput: a row without string ``input`` and ``label``, one text with two labels,
            or no rows at all.
    """
    seen: dict[str, str] = {}
    out: list[Instance] = []
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, Mapping):
            raise InvalidInput(f"{source}: row {number} is not an object", field="data")
        text, label = row.get("input"), row.get("label")
        if not isinstance(text, str) or not isinstance(label, str) or not text.strip():
            raise InvalidInput(
                f"{source}: row {number} needs a non-empty string 'input' and a string 'label'",
                field="data",
            )
        text, label = _one_line(text), label.strip()
        if text in seen:
            if seen[text] != label:
                raise InvalidInput(
                    f"{source}: row {number} labels {text!r} {label!r}, an earlier row "
                    f"{seen[text]!r}",
                    field="data",
                )
            continue
        seen[text] = label
        out.append(Instance(text, label))
    if not out:
        raise InvalidInput(f"{source}: no instances", field="data")
    return out


def load_instances(path: Path | str) -> list[Instance]:
    """Read a JSON-lines data file.

    Args:
        path: The file.

    Returns:
        Its instances (see :func:`parse_instances`).

    Raises:
        InvalidInput: the file is missing, unreadable or malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(
            f"OOLONG data not found at {path}: pass --data PATH (a JSON-lines file of "
            f'{{"input", "label"}} rows) or set {DATA_ENV}',
            {"path": str(path)},
            field="data",
        )
    rows: list[object] = []
    number = 0
    try:
        with path.open(encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):  # noqa: B007 - named in errors
                if line.strip():
                    rows.append(json.loads(line))
    except OSError as err:
        raise InvalidInput(f"cannot read {path}: {err.strerror}", field="data") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InvalidInput(f"{path}: line {number} is not JSON ({err})", field="data") from None
    return parse_instances(rows, str(path))


def labels_of(instances: Sequence[Instance]) -> tuple[str, ...]:
    """The data set's labels, sorted."""
    return tuple(sorted({i.label for i in instances}))


def label_map(instances: Iterable[Instance]) -> dict[str, str]:
    """``{text: label}``: what an oracle looks lines up in."""
    return {i.text: i.label for i in instances}
