"""OOLONG-synth context windows: dated, attributed lines up to a target length in tokens.

A window is a log of instances, one a line, in date order::

    Date: Mar 05, 2023 || User: 48213 || Instance: What is the capital of Peru ?

Lines carry no labels: the model must classify each instance itself, then aggregate. Windows
are deterministic: the same instances, target and seed give the same window, on any machine
(:class:`random.Random` seeded with a string is stable across Python versions and runs).

How a window is drawn (``build_window``):

* **Labels** are skewed per window, as OOLONG-synth skews them: each label gets a random
  weight in ``[0.1, 1]``; each line picks a label by weight, then the next instance of that
  label from a shuffled pool (reshuffled when used up, so a window longer than the data set
  repeats instances; a repeated text keeps its label).
* **Users**: a pool of ``clamp(lines / 12, 2, 40)`` five-digit ids, each with a random weight.
* **Dates**: uniform over a span of 120 to 540 days starting in 2022 or 2023, sorted.
* **Length**: lines are added while the window's text stays within ``target_tokens`` tokens,
  counted by the project's rule, ``ceil(characters / 4)``
  (:func:`rlm.testing.tokens.count_tokens`, also the fake LM server's usage rule); a window
  always has at least one line.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cached_property

from rlm.errors import InvalidInput
from rlm.eval.data import Instance
from rlm.testing.tokens import CHARS_PER_TOKEN, count_tokens

__all__ = [
    "MIN_WINDOW_TOKENS",
    "MONTHS",
    "ParsedLine",
    "Window",
    "WindowLine",
    "build_window",
    "format_date",
    "parse_date",
    "parse_line",
    "parse_lines",
]

#: The smallest target accepted: room for a few lines.
MIN_WINDOW_TOKENS = 64

#: Month abbreviations as dates are written (English, whatever the locale).
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

_LINE = re.compile(r"^Date: ([A-Z][a-z]{2}) (\d{2}), (\d{4}) \|\| User: (\d+) \|\| Instance: (.*)$")
_DATE = re.compile(r"^([A-Z][a-z]{2}) (\d{2}), (\d{4})$")
_EST_TOKENS_PER_LINE = 24


def format_date(day: date) -> str:
    """``Mon DD, YYYY``, e.g. ``Mar 05, 2023``."""
    return f"{MONTHS[day.month - 1]} {day.day:02d}, {day.year}"


def parse_date(text: str) -> date | None:
    """The date :func:`format_date` wrote, or ``None``."""
    match = _DATE.match(text.strip())
    if match is None or match.group(1) not in MONTHS:
        return None
    try:
        return date(int(match.group(3)), MONTHS.index(match.group(1)) + 1, int(match.group(2)))
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class WindowLine:
    """One line of a window, with its gold label (never rendered)."""

    day: date
    user: int
    text: str
    label: str

    def render(self) -> str:
        """The line as the model reads it."""
        return f"Date: {format_date(self.day)} || User: {self.user} || Instance: {self.text}"


@dataclass(frozen=True, slots=True)
class ParsedLine:
    """What a window line tells a reader without labels."""

    day: date
    user: int
    text: str


def parse_line(line: str) -> ParsedLine | None:
    """Read a rendered window line back; ``None`` for anything else."""
    match = _LINE.match(line.strip())
    if match is None or match.group(1) not in MONTHS:
        return None
    try:
        day = date(int(match.group(3)), MONTHS.index(match.group(1)) + 1, int(match.group(2)))
    except ValueError:
        return None
    return ParsedLine(day, int(match.group(4)), match.group(5))


def parse_lines(text: str) -> list[ParsedLine]:
    """Every window line in ``text``, in order (other lines are skipped)."""
    return [p for p in map(parse_line, text.splitlines()) if p is not None]


@dataclass(frozen=True)
class Window:
    """A context window.

    Attributes:
        index: Its number in the run (0-based).
        lines: Its lines, in date order.
    """

    index: int
    lines: tuple[WindowLine, ...]

    @cached_property
    def text(self) -> str:
        """The window as the model reads it: one rendered line each, ``\\n``-separated."""
        return "\n".join(line.render() for line in self.lines)

    @property
    def rendered_lines(self) -> list[str]:
        """The rendered lines."""
        return [line.render() for line in self.lines]

    @property
    def tokens(self) -> int:
        """The window's length by the project's token rule."""
        return count_tokens(self.text)


def _tokens(chars: int) -> int:
    return -(-chars // CHARS_PER_TOKEN)


def _pools(instances: Sequence[Instance]) -> dict[str, list[Instance]]:
    pools: dict[str, list[Instance]] = {}
    for instance in instances:
        pools.setdefault(instance.label, []).append(instance)
    return pools


def build_window(
    instances: Sequence[Instance], target_tokens: int, seed: int | str, index: int = 0
) -> Window:
    """Draw window ``index`` of a run seeded with ``seed``.

    Args:
        instances: The labelled instances to draw from.
        target_tokens: The most tokens the window's text may have.
        seed: The run's seed.
        index: The window's number; windows of one seed differ by it.

    Returns:
        The window.

    Raises:
        InvalidInput: ``target_tokens`` below :data:`MIN_WINDOW_TOKENS`, or no instances.
    """
    if target_tokens < MIN_WINDOW_TOKENS:
        raise InvalidInput(
            f"the window length must be at least {MIN_WINDOW_TOKENS} tokens; got {target_tokens}",
            field="windowTokens",
        )
    if not instances:
        raise InvalidInput("no instances to build a window from", field="data")
    rng = random.Random(f"oolong-window:{seed}:{index}")
    pools = _pools(instances)
    labels = sorted(pools)
    for label in labels:
        rng.shuffle(pools[label])
    label_weights = [rng.uniform(0.1, 1.0) for _ in labels]
    next_of = dict.fromkeys(labels, 0)

    estimate = max(1, target_tokens // _EST_TOKENS_PER_LINE)
    users = rng.sample(range(10_000, 100_000), max(2, min(40, estimate // 12)))
    user_weights = [rng.uniform(0.2, 1.0) for _ in users]
    start = date(2022, 1, 1) + timedelta(days=rng.randrange(730))
    span = rng.randint(120, 540)

    # Dates are sorted once the lines are drawn; sorting keeps every line's length, so the
    # window's length is known while drawing.
    drawn: list[tuple[date, int, Instance]] = []
    chars = 0
    while True:
        label = rng.choices(labels, label_weights)[0]
        pool = pools[label]
        if next_of[label] == len(pool):
            rng.shuffle(pool)
            next_of[label] = 0
        instance = pool[next_of[label]]
        next_of[label] += 1
        day = start + timedelta(days=rng.randint(0, span))
        user = rng.choices(users, user_weights)[0]
        length = len(WindowLine(day, user, instance.text, label).render()) + (1 if drawn else 0)
        if drawn and _tokens(chars + length) > target_tokens:
            break
        drawn.append((day, user, instance))
        chars += length
    drawn.sort(key=lambda d: d[0])
    lines = tuple(WindowLine(day, user, inst.text, inst.label) for day, user, inst in drawn)
    return Window(index, lines)
