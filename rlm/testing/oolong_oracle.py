"""An oracle LM for the OOLONG evaluation: it labels lines from the data, never by guessing.

With this oracle behind the engine, every mode that can see the lines must score 100 %: that
proves the harness (windows, prompts, parsing, scoping, counting, scoring) and leaves the
model as the only thing a real run measures. It answers four kinds of prompt:

1. ``llm_classify`` prompts (``map-reduce`` mode): each numbered line's label, looked up by
   its text (a whole window line is looked up by its ``Instance:`` text).
2. Direct prompts (``direct`` mode): the window lines in the prompt are labelled from the
   data, and the question in the prompt (:func:`rlm.eval.questions.parse_question`) answered
   in the form it asks for.
3. The RLM root (``rlm`` mode): given the root's conversation (:mod:`rlm.rlmmode.prompts`),
   it reads the question from the query and replies with a ```` ```repl ```` block
   (:func:`root_code`) that splits ``context`` into lines, keeps those in the question's scope,
   classifies them in chunks through ``llm_query_batched`` with classify-shaped prompts (4),
   counts the labels in Python, and sets ``answer["content"]`` and ``answer["ready"]``. Every
   turn gets the same block (it is idempotent), so a session that ignores a turn-1 answer
   gets it again on turn 2; the last call (no code runs) gets the answer the block printed.
4. The root's sub-calls: classify-shaped, answered as (1).

:func:`oolong_oracle` answers one prompt (``prompt -> reply``); :func:`oolong_responder`
answers a whole request for :class:`~rlm.testing.FakeLMServer` (the root needs the
conversation: its later turns no longer state the query).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from rlm.eval.questions import QuestionSpec, parse_question
from rlm.eval.windows import MONTHS, parse_line, parse_lines
from rlm.operations.lm import CLASSIFY_ANSWER_FORMAT
from rlm.testing.oracle import classify_oracle
from rlm.testing.responders import ChatRequest, Responder

__all__ = [
    "ANSWER_MARK",
    "ROOT_CHUNK_LINES",
    "UNANSWERABLE",
    "oolong_oracle",
    "oolong_responder",
    "root_code",
    "root_reply",
]

#: Lines the root's code puts in one sub-call.
ROOT_CHUNK_LINES = 40

#: What the root's code prints before its answer (the last call finds the answer by it).
ANSWER_MARK = "oracle answer ->"

#: The reply to a prompt the oracle does not recognise (it scores 0 on every question).
UNANSWERABLE = "I cannot answer this prompt."

_TURN = re.compile(r"^Turn \d+/\d+:", re.MULTILINE)
_QUERY_MARK = "Answer the following:"
_PRINTED = re.compile(rf"^{re.escape(ANSWER_MARK)} (.*)$", re.MULTILINE)

LabelOf = Mapping[str, str] | Callable[[str], str]


def _labeller(label_of: LabelOf, default: str) -> Callable[[str], str]:
    def label(text: str) -> str:
        line = parse_line(text)
        key = line.text if line is not None else text.strip()
        if callable(label_of):
            return label_of(key)
        return label_of.get(key, default)

    return label


def _direct_answer(prompt: str, spec: QuestionSpec, label: Callable[[str], str]) -> str:
    rows = [(line.day, line.user, label(line.text)) for line in parse_lines(prompt)]
    return spec.format_answer(spec.answer_from_counts(spec.counts_in(rows)))


def _is_root_turn(prompt: str) -> bool:
    return _QUERY_MARK in prompt and _TURN.search(prompt) is not None


def root_code(spec: QuestionSpec, chunk_lines: int = ROOT_CHUNK_LINES) -> str:
    """The REPL code with which the oracle root answers ``spec`` (standard library only).

    Args:
        spec: The question, as read from the query.
        chunk_lines: Lines per sub-call.

    Returns:
        Python source for the REPL, where ``context``, ``llm_query_batched`` and ``answer``
        are defined.
    """
    scope = spec.scope
    before = None if scope.before is None else tuple(scope.before.timetuple()[:3])
    instruction = "Classify each numbered line into exactly one of the labels."
    head = (
        f"{instruction}\n\nLabels:\n"
        + "".join(f"- {label}\n" for label in spec.labels)
        + f"\nAnswer with exactly one line per item, in order, formatted "
        f"`{CLASSIFY_ANSWER_FORMAT}`, using the labels exactly as written, and nothing else."
        "\n\nLines:\n"
    )
    return f"""\
import re

LABELS = {list(spec.labels)!r}
MONTHS = {list(MONTHS)!r}
AGGREGATE, LABEL, LABEL_B = {spec.aggregate!r}, {spec.label!r}, {spec.label_b!r}
SCOPE_USER, SCOPE_MONTH, SCOPE_BEFORE = {scope.user!r}, {scope.month!r}, {before!r}
LINE = re.compile(
    r"^Date: ([A-Z][a-z]{{2}}) (\\d{{2}}), (\\d{{4}}) \\|\\| User: (\\d+) \\|\\| Instance: (.*)$"
)
REPLY = re.compile(r"^\\s*(\\d+)\\s*[:.)\\]-]\\s*(.+?)\\s*$")
HEAD = {head!r}

lines = context.splitlines() if isinstance(context, str) else [str(x) for x in context]
texts = []
for raw in lines:
    m = LINE.match(raw.strip())
    if m is None or m.group(1) not in MONTHS:
        continue
    day = (int(m.group(3)), MONTHS.index(m.group(1)) + 1, int(m.group(2)))
    if SCOPE_USER is not None and int(m.group(4)) != SCOPE_USER:
        continue
    if SCOPE_MONTH is not None and day[:2] != tuple(SCOPE_MONTH):
        continue
    if SCOPE_BEFORE is not None and not day < tuple(SCOPE_BEFORE):
        continue
    texts.append(m.group(5))
print(len(lines), "lines,", len(texts), "in scope")

chunks = [texts[i : i + {chunk_lines}] for i in range(0, len(texts), {chunk_lines})]
prompts = [HEAD + "\\n".join(f"{{n}}. {{t}}" for n, t in enumerate(c, 1)) for c in chunks]
replies = []
for i in range(0, len(prompts), 20):
    replies += llm_query_batched(prompts[i : i + 20])

by_fold = {{label.casefold(): label for label in LABELS}}
counts = {{label: 0 for label in LABELS}}
for chunk, reply in zip(chunks, replies):
    found = {{}}
    for row in reply.splitlines():
        m = REPLY.match(row)
        if m is not None and m.group(2).strip("`'\\"*. ").casefold() in by_fold:
            found.setdefault(int(m.group(1)), by_fold[m.group(2).strip("`'\\"*. ").casefold()])
    for n in range(1, len(chunk) + 1):
        if n in found:
            counts[found[n]] += 1
print(counts)

if AGGREGATE == "count":
    content = f"Answer: {{counts.get(LABEL, 0)}}"
elif AGGREGATE == "compare":
    a, b = counts.get(LABEL, 0), counts.get(LABEL_B, 0)
    relation = "more common than" if a > b else "less common than" if a < b else "same frequency as"
    content = f"Answer: {{LABEL}} is {{relation}} {{LABEL_B}}"
else:
    sign = -1 if AGGREGATE == "most" else 1
    content = "Label: " + min(LABELS, key=lambda label: (sign * counts[label], label))
answer["content"] = content
answer["ready"] = True
print({ANSWER_MARK!r}, content)
"""


def root_reply(spec: QuestionSpec) -> str:
    """The oracle root's reply: a sentence of plan and :func:`root_code` in a repl block."""
    return (
        "I will keep the lines in the question's scope, label them in chunks with sub-calls, "
        f"and count the labels in Python.\n\n```repl\n{root_code(spec)}```\n"
    )


def oolong_oracle(label_of: LabelOf, default: str = "unknown") -> Callable[[str], str]:
    """An oracle for one prompt of the OOLONG evaluation (kinds 1, 2, 4 and the root's turn 1).

    Args:
        label_of: The gold label of an instance's text (a mapping or a function), e.g.
            :func:`rlm.eval.data.label_map` of the data.
        default: The label of a text the mapping does not know (which makes answers wrong).

    Returns:
        ``prompt -> reply``; :data:`UNANSWERABLE` for a prompt it does not recognise.
    """
    label = _labeller(label_of, default)
    classify = classify_oracle(label)

    def reply(prompt: str) -> str:
        if _is_root_turn(prompt):
            spec = parse_question(prompt)
            return root_reply(spec) if spec is not None else UNANSWERABLE
        if "\nLines:\n" in prompt:
            return classify(prompt)
        spec = parse_question(prompt)
        if spec is not None and parse_lines(prompt):
            return _direct_answer(prompt, spec, label)
        return UNANSWERABLE

    return reply


def oolong_responder(label_of: LabelOf, default: str = "unknown") -> Responder:
    """An oracle for :class:`~rlm.testing.FakeLMServer`: :func:`oolong_oracle`, plus the RLM
    root's later turns (which no longer state the query).

    Args:
        label_of: The gold label of an instance's text.
        default: The label of a text the mapping does not know.

    Returns:
        ``ChatRequest -> reply``.
    """
    single = oolong_oracle(label_of, default)

    def respond(request: ChatRequest) -> str:
        users = [m["content"] for m in request.messages if m["role"] == "user"]
        first = next((u for u in users if _is_root_turn(u)), None)
        if first is None:
            return single(request.last_user_message)
        last = request.last_user_message
        if _TURN.search(last) is None:
            # The last call: no code runs after it, so answer with what the block printed.
            printed = [m.group(1) for u in users for m in _PRINTED.finditer(u)]
            return printed[-1] if printed else UNANSWERABLE
        spec = parse_question(first)
        return root_reply(spec) if spec is not None else UNANSWERABLE

    return respond
