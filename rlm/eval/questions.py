"""OOLONG-synth questions over a window, their wording, and their gold answers.

Every question is a **scope** (which lines count) and an **aggregate** over the labels of the
lines in scope:

============================  ===========================  ==================================
kind                          scope                        answer
============================  ===========================  ==================================
``count``                     every line                   lines with label X (a number)
``most_common``               every line                   the most frequent label
``least_common``              every line                   the least frequent label (0 counts)
``compare``                   every line                   X "more common than" / "less
                                                           common than" / "same frequency as" Y
``user_count``                one user's lines             lines with label X (a number)
``user_most_common``          one user's lines             the most frequent label
``month_count``               lines dated in one month     lines with label X (a number)
``before_count``              lines dated before a day     lines with label X (a number)
============================  ===========================  ==================================

The gold answer is computed from the window's labels (:meth:`QuestionSpec.answer_from_counts`
over the counts of the lines in scope); the same function turns a model's per-line labels into
an answer in ``map-reduce`` mode. Each prompt states the answer's form (``Answer: <number>``,
``Label: <label>``, ``Answer: X is <relation> Y``), which the benchmark's scoring reads after
the last ``:``. :func:`parse_question` reads a prompt back (oracles use it to know what was
asked): ``parse_question(spec.prompt()) == spec`` for every spec.

Questions are generated so that they have one right answer: a most/least common label is
asked only when no other label ties with it, and a scoped question only over a non-empty scope.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from rlm.errors import InvalidInput
from rlm.eval.windows import Window, format_date, parse_date

__all__ = [
    "COMPARISONS",
    "KINDS",
    "Aggregate",
    "AnswerType",
    "Question",
    "QuestionSpec",
    "Scope",
    "check_labels",
    "make_questions",
    "parse_question",
]

Aggregate = Literal["count", "most", "least", "compare"]
AnswerType = Literal["number", "label", "comparison"]

#: The question kinds, in the order a run cycles through them.
KINDS = (
    "count",
    "most_common",
    "least_common",
    "compare",
    "user_count",
    "user_most_common",
    "month_count",
    "before_count",
)

#: The answers of a ``compare`` question: "<X> is <answer> <Y>".
COMPARISONS = ("more common than", "less common than", "same frequency as")

_MONTH_NAMES = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)

_KIND_PARTS: dict[str, tuple[str, Aggregate]] = {
    "count": ("all", "count"),
    "most_common": ("all", "most"),
    "least_common": ("all", "least"),
    "compare": ("all", "compare"),
    "user_count": ("user", "count"),
    "user_most_common": ("user", "most"),
    "month_count": ("month", "count"),
    "before_count": ("before", "count"),
}


@dataclass(frozen=True, slots=True)
class Scope:
    """Which lines a question is about; at most one field is set (none: every line).

    Attributes:
        user: Only this user's lines.
        month: Only lines dated in this ``(year, month)``.
        before: Only lines dated strictly before this day.
    """

    user: int | None = None
    month: tuple[int, int] | None = None
    before: date | None = None

    @property
    def kind(self) -> str:
        """``all``, ``user``, ``month`` or ``before``."""
        if self.user is not None:
            return "user"
        if self.month is not None:
            return "month"
        if self.before is not None:
            return "before"
        return "all"

    def admits(self, day: date, user: int) -> bool:
        """Whether a line of ``user`` dated ``day`` is in scope."""
        if self.user is not None and user != self.user:
            return False
        if self.month is not None and (day.year, day.month) != self.month:
            return False
        return self.before is None or day < self.before

    def phrase(self) -> str:
        """How the prompt states the scope."""
        if self.user is not None:
            return f"Considering only the instances of user {self.user}"
        if self.month is not None:
            year, month = self.month
            return f"Considering only the instances dated in {_MONTH_NAMES[month - 1]} {year}"
        if self.before is not None:
            return f"Considering only the instances dated before {format_date(self.before)}"
        return "Considering all instances in the data"


def _quoted(labels: Iterable[str]) -> str:
    return ", ".join(f"'{label}'" for label in labels)


@dataclass(frozen=True, slots=True)
class QuestionSpec:
    """What a question asks, independent of any window.

    Attributes:
        aggregate: ``count``, ``most``, ``least`` or ``compare``.
        labels: Every label of the data set (the answer space), sorted.
        scope: Which lines count.
        label: The label counted (``count``) or compared (``compare``: X).
        label_b: The other label of a ``compare`` (Y).
    """

    aggregate: Aggregate
    labels: tuple[str, ...]
    scope: Scope = field(default_factory=Scope)
    label: str | None = None
    label_b: str | None = None

    @property
    def kind(self) -> str:
        """The kind's name (see :data:`KINDS`); ``<scope>_<aggregate>`` for other pairs."""
        for name, parts in _KIND_PARTS.items():
            if parts == (self.scope.kind, self.aggregate):
                return name
        return f"{self.scope.kind}_{self.aggregate}"

    @property
    def answer_type(self) -> AnswerType:
        """``number``, ``label`` or ``comparison``."""
        if self.aggregate == "count":
            return "number"
        return "comparison" if self.aggregate == "compare" else "label"

    def prompt(self) -> str:
        """The question as a model reads it: the data's format, the labels, the question."""
        preamble = (
            "The data has one instance per line, formatted "
            "'Date: <date> || User: <user id> || Instance: <text>'. Each instance can be "
            f"classified into exactly one of these labels: {_quoted(self.labels)}. The labels "
            "are not in the data: work out each instance's label yourself."
        )
        if self.aggregate == "count":
            ask = (
                f"how many instances have the label '{self.label}'? Give your final answer in "
                "the form 'Answer: <number>'."
            )
        elif self.aggregate == "compare":
            ask = (
                f"is the label '{self.label}' more common, less common, or the same frequency "
                f"as the label '{self.label_b}'? Give your final answer in the form "
                f"'Answer: {self.label} is <relation> {self.label_b}', where <relation> is one "
                f"of {_quoted(COMPARISONS)}."
            )
        else:
            which = "most common" if self.aggregate == "most" else "least common"
            zero = (
                " (a label that no instance has counts as 0)" if self.aggregate == "least" else ""
            )
            ask = (
                f"which label is the {which}{zero}? Give your final answer in the form "
                "'Label: <label>', with the label exactly as written above."
            )
        return f"{preamble}\n\n{self.scope.phrase()}, {ask}"

    def answer_from_counts(self, counts: Mapping[str, int]) -> int | str:
        """The answer, given how many lines in scope carry each label.

        Keys that are not labels (``llm_classify``'s ``unparsed``) are ignored; a tie for the
        most or least common label goes to the alphabetically first.
        """

        def n(label: str | None) -> int:
            return int(counts.get(label, 0)) if label is not None else 0

        if self.aggregate == "count":
            return n(self.label)
        if self.aggregate == "compare":
            a, b = n(self.label), n(self.label_b)
            return COMPARISONS[0] if a > b else COMPARISONS[1] if a < b else COMPARISONS[2]
        sign = -1 if self.aggregate == "most" else 1
        return min(self.labels, key=lambda label: (sign * n(label), label))

    def format_answer(self, value: int | str) -> str:
        """A reply giving ``value`` in the form the prompt asks for."""
        if self.aggregate == "count":
            return f"Answer: {value}"
        if self.aggregate == "compare":
            return f"Answer: {self.label} is {value} {self.label_b}"
        return f"Label: {value}"

    def counts_in(self, lines: Iterable[tuple[date, int, str]]) -> Counter[str]:
        """Labels of the ``(day, user, label)`` lines in scope, counted."""
        return Counter(label for day, user, label in lines if self.scope.admits(day, user))


@dataclass(frozen=True, slots=True)
class Question:
    """A question about one window, with its gold answer.

    Attributes:
        id: ``w<window>-<n>-<kind>``, unique in a run.
        window: The window's index.
        spec: What is asked.
        gold: The right answer (a number, a label or a comparison phrase).
    """

    id: str
    window: int
    spec: QuestionSpec
    gold: int | str

    @property
    def kind(self) -> str:
        """The question's kind."""
        return self.spec.kind

    @property
    def prompt(self) -> str:
        """The question as a model reads it."""
        return self.spec.prompt()


# -- reading a prompt back ---------------------------------------------------------------------

_LABELS = re.compile(r"exactly one of these labels: ((?:'[^'\n]*'(?:, )?)+)\. The labels")
_QUOTED = re.compile(r"'([^'\n]*)'")
_QUESTION = re.compile(
    r"Considering (?:(all instances in the data)"
    r"|only the instances of user (\d+)"
    r"|only the instances dated in ([A-Z][a-z]+) (\d{4})"
    r"|only the instances dated before ([A-Z][a-z]{2} \d{2}, \d{4})), "
    r"(?:how many instances have the label '([^'\n]*)'\?"
    r"|which label is the (most|least) common"
    r"|is the label '([^'\n]*)' more common, less common, or the same frequency as the label "
    r"'([^'\n]*)'\?)"
)


def _last(matches: Iterator[re.Match[str]]) -> re.Match[str] | None:
    found = list(matches)
    return found[-1] if found else None


def parse_question(text: str) -> QuestionSpec | None:
    """The question a text holds (its last one), as :meth:`QuestionSpec.prompt` words it.

    Args:
        text: A prompt, or any text that contains one (a whole conversation turn).

    Returns:
        The spec, or ``None`` when the text holds no question of this module's wording.
    """
    labels_match = _last(_LABELS.finditer(text))
    question = _last(_QUESTION.finditer(text))
    if labels_match is None or question is None:
        return None
    labels = tuple(_QUOTED.findall(labels_match.group(1)))
    scope = Scope()
    if question.group(2) is not None:
        scope = Scope(user=int(question.group(2)))
    elif question.group(3) is not None:
        if question.group(3) not in _MONTH_NAMES:
            return None
        scope = Scope(month=(int(question.group(4)), _MONTH_NAMES.index(question.group(3)) + 1))
    elif question.group(5) is not None:
        before = parse_date(question.group(5))
        if before is None:
            return None
        scope = Scope(before=before)
    if question.group(6) is not None:
        return QuestionSpec("count", labels, scope, question.group(6))
    if question.group(7) is not None:
        return QuestionSpec("most" if question.group(7) == "most" else "least", labels, scope)
    return QuestionSpec("compare", labels, scope, question.group(8), question.group(9))


# -- generating questions ----------------------------------------------------------------------


def check_labels(labels: Sequence[str]) -> tuple[str, ...]:
    """The labels, sorted, if prompts can quote them.

    Raises:
        InvalidInput: fewer than two labels, or a label with a quote, a colon or a line break
            (the prompt quotes labels, and the scoring reads the answer after the last ``:``).
    """
    out = tuple(sorted(set(labels)))
    if len(out) < 2:
        raise InvalidInput("OOLONG questions need at least two labels", field="data")
    for label in out:
        if not label or any(c in label for c in "'\n:"):
            raise InvalidInput(
                f"label {label!r} cannot be quoted in a question (no quotes, colons or line "
                "breaks)",
                field="data",
            )
    return out


def _unique_extreme(counts: Mapping[str, int], labels: Sequence[str], most: bool) -> bool:
    values = sorted((counts.get(label, 0) for label in labels), reverse=most)
    return len(values) < 2 or values[0] != values[1]


def _candidates(kind: str, window: Window, labels: tuple[str, ...]) -> list[QuestionSpec]:
    """Every question of ``kind`` the window can ask with one right answer."""
    rows = [(line.day, line.user, line.label) for line in window.lines]
    if kind == "count":
        return [QuestionSpec("count", labels, Scope(), label) for label in labels]
    if kind in ("most_common", "least_common"):
        most = kind == "most_common"
        counts = Counter(label for _, _, label in rows)
        ok = _unique_extreme(counts, labels, most)
        return [QuestionSpec("most" if most else "least", labels)] if ok else []
    if kind == "compare":
        return [
            QuestionSpec("compare", labels, Scope(), a, b) for a in labels for b in labels if a != b
        ]
    if kind == "user_count":
        users = sorted({user for _, user, _ in rows})
        return [QuestionSpec("count", labels, Scope(user=u), lb) for u in users for lb in labels]
    if kind == "user_most_common":
        out = []
        for user in sorted({user for _, user, _ in rows}):
            spec = QuestionSpec("most", labels, Scope(user=user))
            counts = spec.counts_in(rows)
            if counts.total() >= 2 and _unique_extreme(counts, labels, True):
                out.append(spec)
        return out
    if kind == "month_count":
        months = sorted({(day.year, day.month) for day, _, _ in rows})
        return [QuestionSpec("count", labels, Scope(month=m), lb) for m in months for lb in labels]
    if kind == "before_count":
        days = sorted({day for day, _, _ in rows})[1:]  # the first day would scope no line
        return [QuestionSpec("count", labels, Scope(before=d), lb) for d in days for lb in labels]
    raise InvalidInput(f"unknown question kind {kind!r}; known: {', '.join(KINDS)}", field="kinds")


def make_questions(
    window: Window, labels: Sequence[str], kinds: Sequence[str], seed: int | str
) -> list[Question]:
    """One question per entry of ``kinds`` about ``window``, with gold answers.

    A kind the window cannot ask (e.g. every label ties) is replaced by the next kind of
    :data:`KINDS` that it can; no question is asked twice.

    Args:
        window: The window.
        labels: The data set's labels.
        kinds: The kinds wanted, in order (names from :data:`KINDS`).
        seed: The run's seed (the choice of labels, users and dates follows it).

    Returns:
        The questions, in the order of ``kinds``.

    Raises:
        InvalidInput: an unknown kind, or labels a prompt cannot quote.
    """
    all_labels = check_labels(labels)
    rng = random.Random(f"oolong-questions:{seed}:{window.index}")
    rows = [(line.day, line.user, line.label) for line in window.lines]
    pools: dict[str, list[QuestionSpec]] = {}
    used: set[QuestionSpec] = set()
    out: list[Question] = []
    for number, wanted in enumerate(kinds):
        if wanted not in _KIND_PARTS:
            raise InvalidInput(
                f"unknown question kind {wanted!r}; known: {', '.join(KINDS)}", field="kinds"
            )
        start = KINDS.index(wanted)
        for kind in KINDS[start:] + KINDS[:start]:
            if kind not in pools:
                pools[kind] = _candidates(kind, window, all_labels)
                rng.shuffle(pools[kind])
            spec = next((s for s in pools[kind] if s not in used), None)
            if spec is not None:
                break
        if spec is None:
            continue  # the window is too small to ask anything new
        used.add(spec)
        gold = spec.answer_from_counts(spec.counts_in(rows))
        out.append(Question(f"w{window.index}-{number}-{spec.kind}", window.index, spec, gold))
    return out
