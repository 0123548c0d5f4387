"""OOLONG-style label aggregation: label_counts and label_stats.

OOLONG-synth asks aggregate questions over a long context whose lines each carry a label:
which label is most or least frequent, how many lines have label X, is X more common than Y,
per-user variants. In an RLM run a language model labels each line; here the label is a field
of the record, so these operations are the exact aggregation step (and the reference a model's
answer is scored against).

Records are objects ``{"label": str, "text"?: str, "user"?: str | int, "date"?: str}``; other
keys are ignored. Users are compared by their text (``7`` and ``"7"`` are the same user).

Ties between labels go to the alphabetically first label, so every tree gives one answer.

Example:
    >>> op = LabelStats()
    >>> p = op.parse_params({"question": "compare", "label": "spam", "label_b": "ham"})
    >>> recs = [{"label": "spam"}, {"label": "ham"}, {"label": "spam"}]
    >>> op.finish(op.leaf_at(recs, 0, p), p)
    'more common than'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rlm.errors import InvalidInput
from rlm.operations.params import ParamReader, field_of
from rlm.operations.positional import PositionalOperation
from rlm.operations.schema import nullable, params, string
from rlm.operations.values import descending_counts, item_error, type_name

__all__ = ["QUESTIONS", "LabelCounts", "LabelStats"]

#: The questions ``label_stats`` answers, and the parameters each needs.
QUESTIONS: dict[str, tuple[str, ...]] = {
    "compare": ("label", "label_b"),
    "count": ("label",),
    "least_frequent": (),
    "most_frequent": (),
    "per_user_most_frequent": (),
}

_Counts = dict[str, int]


def _user_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON's 7.0 is the integer 7
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


_USER = nullable({"anyOf": [{"type": "string"}, {"type": "integer"}]})

#: A record: a label, and optionally text, user and date; other keys are ignored.
_RECORDS = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["label"],
        "properties": {
            "label": {"type": "string"},
            "text": nullable({"type": "string"}),
            "date": nullable({"type": "string"}),
            "user": _USER,
        },
    },
}


def _record(item: Any, index: int) -> tuple[str, str | None]:
    """``(label, user)`` of a record, checking the fields this module reads."""
    if not isinstance(item, Mapping):
        raise item_error(index, f"a record must be an object, not {type_name(item)}")
    label = item.get("label")
    if not isinstance(label, str):
        raise item_error(index, f"the record's label must be a string, not {type_name(label)}")
    user = item.get("user")
    user_text = _user_text(user)
    if user is not None and user_text is None:
        raise item_error(
            index, f"the record's user must be a string or an integer, not {type_name(user)}"
        )
    for key in ("text", "date"):
        if key in item and item[key] is not None and not isinstance(item[key], str):
            raise item_error(
                index, f"the record's {key} must be a string, not {type_name(item[key])}"
            )
    return label, user_text


def _add(total: _Counts, counts: Mapping[str, int]) -> None:
    for label, n in counts.items():
        total[label] = total.get(label, 0) + n


class LabelCounts(PositionalOperation):
    """How many records carry each label.

    Output: ``{label: count}`` ordered by descending count, then label. Partial: the counts.
    """

    name = "label_counts"
    items_schema = _RECORDS
    description = "Records per label, most frequent first."

    def leaf_at(self, chunk: Sequence[Any], start: int, params: Any) -> _Counts:
        counts: _Counts = {}
        for i, item in enumerate(chunk):
            label, _ = _record(item, start + i)
            counts[label] = counts.get(label, 0) + 1
        return counts

    def combine(self, partials: Sequence[_Counts], params: Any) -> _Counts:
        total: _Counts = {}
        for counts in partials:
            _add(total, counts)
        return total

    def finish(self, partial: _Counts, params: Any) -> _Counts:
        return descending_counts(partial)


@dataclass(frozen=True)
class _StatsParams:
    question: str
    label: str | None
    label_b: str | None
    user: str | None


def _most(counts: Mapping[str, int], least: bool = False) -> str | None:
    if not counts:
        return None
    # Alphabetical order breaks ties: sort by (count, label) with the count's sign flipped.
    sign = 1 if least else -1
    return min(counts, key=lambda label: (sign * counts[label], label))


class LabelStats(PositionalOperation):
    """Answers one OOLONG-style question about the labels.

    Params:
        question (str, required): One of
            ``most_frequent`` -> the label with the most records (str);
            ``least_frequent`` -> the label with the fewest records among those present (str);
            ``count`` -> how many records have ``label`` (int);
            ``compare`` -> ``"more common than"``, ``"less common than"`` or
            ``"same frequency as"``: how ``label`` relates to ``label_b``, to be read as
            "<label> is <answer> <label_b>";
            ``per_user_most_frequent`` -> ``{user: most frequent label}`` ordered by user, or
            the label string when ``user`` is given.
        label (str): Required by ``count`` and ``compare``.
        label_b (str): Required by ``compare``.
        user (str | int, optional): Only that user's records count.

    Ties go to the alphabetically first label.

    A most or least frequent question over no records (of ``user``) answers ``null``.

    Raises:
        InvalidInput: a missing or unused parameter.
    """

    name = "label_stats"
    items_schema = _RECORDS
    params_schema = {
        "anyOf": [
            params(
                {"question": {"const": question}, **{name: string() for name in needs}},
                **{name: {"type": "null"} for name in ("label", "label_b") if name not in needs},
                user=_USER,
            )
            for question, needs in QUESTIONS.items()
        ]
    }
    description = "Answers an OOLONG-style question about the labels; params: question, ..."

    def parse_params(self, params: Mapping[str, Any]) -> _StatsParams:
        reader = ParamReader(self.name, params, ("question", "label", "label_b", "user"))
        question = reader.string("question", choices=QUESTIONS)
        needs = QUESTIONS[question]
        values: dict[str, str | None] = {}
        for name in ("label", "label_b"):
            if name in needs:
                values[name] = reader.string(name)
            else:
                reader.forbid(name, f"by question {question!r}")
                values[name] = None
        user = None
        if reader.has("user"):
            user = _user_text(params["user"])
            if user is None:
                raise InvalidInput(
                    "parameter 'user' of 'label_stats' must be a string or an integer",
                    field=field_of("user"),
                )
        return _StatsParams(question, values["label"], values["label_b"], user)

    def leaf_at(self, chunk: Sequence[Any], start: int, params: _StatsParams) -> dict[str, _Counts]:
        # Counts per user ("" holds records with no user when no user filter is set).
        by_user: dict[str, _Counts] = {}
        per_user = params.question == "per_user_most_frequent"
        for i, item in enumerate(chunk):
            label, user = _record(item, start + i)
            if params.user is not None and user != params.user:
                continue
            if per_user and params.user is None and user is None:
                continue  # a record without a user belongs to no one's answer
            key = user if per_user and user is not None else ""
            counts = by_user.setdefault(key, {})
            counts[label] = counts.get(label, 0) + 1
        return by_user

    def combine(
        self, partials: Sequence[dict[str, _Counts]], params: _StatsParams
    ) -> dict[str, _Counts]:
        total: dict[str, _Counts] = {}
        for by_user in partials:
            for user, counts in by_user.items():
                _add(total.setdefault(user, {}), counts)
        return total

    def finish(self, partial: dict[str, _Counts], params: _StatsParams) -> Any:
        q = params.question
        if q == "per_user_most_frequent" and params.user is None:
            return {user: _most(partial[user]) for user in sorted(partial)}
        counts: _Counts = {}
        for per_user in partial.values():
            _add(counts, per_user)
        if q == "count":
            return counts.get(params.label or "", 0)
        if q == "compare":
            a, b = counts.get(params.label or "", 0), counts.get(params.label_b or "", 0)
            return (
                "more common than"
                if a > b
                else "less common than"
                if a < b
                else "same frequency as"
            )
        # No records (of that user): no label is most or least frequent; the answer is null.
        return _most(counts, least=q == "least_frequent")
