"""Language-model operations: ``llm_map``, ``llm_classify`` and ``llm_summarize``.

They follow the same monoid contract as every operation, so the engine plans, fans out,
cancels and counts them like the others. Each leaf (and, for ``llm_summarize``, each combine)
sends its requests through the ``lm`` handle the engine binds to the running call
(:func:`rlm.lm.handle.current_lm`); the operations themselves hold no client and no Ray.

Each call's LM work is written once, as steps (:mod:`rlm.lm.steps`): ``leaf_steps``,
``combine_steps`` and ``fold_steps`` yield requests and receive replies. ``leaf``, ``combine``
and ``fold`` run them with the bound ``lm`` handle (blocking, on any thread); the engine's
in-process agent runs the same steps on its event loop, so a call waiting on a model holds no
thread there.

Common parameters: ``system`` (a system message), ``maxTokens`` (completion tokens per call),
``model`` and ``provider`` (defaults: the default provider and its model), ``temperature``
(default 0, which makes calls memoisable).

- ``llm_map``: ``{"prompt": "...{chunk}..."}``; each leaf sends the template with ``{chunk}``
  replaced by its items joined by newlines; the output is the list of replies, one per chunk,
  in input order (``leafSize`` sets the items per chunk).
- ``llm_classify``: ``{"labels": [...], "instruction"?}``; every line gets exactly one label.
  The reply is parsed strictly (one ``<number>: <label>`` line per item); an unparsable reply
  is asked again once with a correction, then the lines still without a label are counted
  under ``"unparsed"``. Output ``{label: count}`` (every label, in the order given).
- ``llm_summarize``: ``{"instruction"?}``; leaves summarise their chunk, and every combine
  summarises its children's summaries with the model (a real LM combine); ``sequential``
  folds each chunk into the running summary.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, cast

from rlm.errors import InvalidInput
from rlm.jsonable import dumps
from rlm.lm.calls import LMRequest
from rlm.lm.handle import current_lm
from rlm.lm.steps import LMSteps, run_steps
from rlm.operations.base import Chunk, Operation
from rlm.operations.params import ParamReader, field_of
from rlm.operations.schema import SchemaContext, branch, integer, nullable, params, string

__all__ = [
    "CLASSIFY_ANSWER_FORMAT",
    "UNPARSED",
    "LLMClassify",
    "LLMMap",
    "LLMOperation",
    "LLMSummarize",
    "classify_prompt",
    "parse_classification",
]

#: The label under which lines are counted when the model's replies could not be parsed.
UNPARSED = "unparsed"

#: How ``llm_classify`` asks the model to answer (one line per item).
CLASSIFY_ANSWER_FORMAT = "<number>: <label>"

_COMMON = ("system", "maxTokens", "model", "provider", "temperature")
_MAX_PROMPT = 200_000


def _lm_schemas(
    op: Operation, context: SchemaContext, required: dict[str, Any], **optional: Any
) -> list[dict[str, Any]]:
    """The branches of an LM operation: one per configured provider, naming its models (the
    first provider is where a request naming none goes). None without a provider."""
    common = {
        "system": nullable(string(_MAX_PROMPT)),
        "maxTokens": nullable(integer(1, 1_000_000)),
        "temperature": nullable({"type": "number", "minimum": 0, "maximum": 2}),
        **optional,
    }
    branches = []
    for i, (provider, models) in enumerate(context.lm_models.items()):
        named: dict[str, Any] = {"const": provider}
        choice = {
            "provider": nullable(named) if i == 0 else named,
            "model": nullable({"enum": list(models)}),
        }
        if i == 0:
            schema = params(required, **common, **choice)
        else:
            schema = params({**required, "provider": named}, **common, model=choice["model"])
        branches.append(branch(op, context, params_schema=schema))
    return branches


@dataclass(frozen=True, slots=True)
class _Call:
    """The call settings every LM operation shares."""

    system: str | None
    max_tokens: int | None
    model: str | None
    provider: str | None
    temperature: float

    def request(self, prompt: str, purpose: str, system: str | None = None) -> LMRequest:
        return LMRequest.chat(
            prompt,
            system=system if system is not None else self.system,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            model=self.model,
            provider=self.provider,
            purpose=purpose,
        )


def _read_call(reader: ParamReader) -> _Call:
    temperature = 0.0
    if reader.has("temperature"):
        temperature = reader.number("temperature")
        if not 0.0 <= temperature <= 2.0:
            raise InvalidInput(
                f"parameter 'temperature' must be between 0 and 2; got {temperature}",
                field=field_of("temperature"),
            )
    return _Call(
        system=reader.optional_string("system", max_len=_MAX_PROMPT),
        max_tokens=reader.integer("maxTokens", lo=1, hi=1_000_000)
        if reader.has("maxTokens")
        else None,
        model=reader.optional_string("model", max_len=256),
        provider=reader.optional_string("provider", max_len=64),
        temperature=temperature,
    )


def _readable(value: Any) -> Any:
    """``value`` with every ``bytes`` in it as the UTF-8 text it holds (bad bytes replaced):
    an Arrow ``binary`` column's values, which JSON cannot write (the source scan reads them
    the same way, :mod:`rlm.security.arrow_scan`)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {key: _readable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_readable(item) for item in value]
    return value


def _line(item: Any) -> str:
    """An item as one line of a prompt (JSON for anything but a string)."""
    item = _readable(item)
    text = item if isinstance(item, str) else dumps(item).decode()
    return text.replace("\r", " ").replace("\n", " ")


def _items(chunk: Chunk) -> Iterable[Any]:
    """A chunk's items as a prompt shows them, whatever the source's format gave the leaf.

    A storage source's leaf gets an Arrow table (``arrow``: one item per row, as an object),
    raw bytes (``bytes``: one item per line of their UTF-8 text) or a numpy array (numbers);
    iterating those directly would give columns, small integers or numpy scalars.
    """
    if isinstance(chunk, bytes | bytearray | memoryview):
        return str(chunk, "utf-8", "replace").splitlines()
    to_pylist = getattr(chunk, "to_pylist", None)  # a pyarrow Table or Array
    if callable(to_pylist):
        return cast("list[Any]", to_pylist())
    tolist = getattr(chunk, "tolist", None)  # a numpy array
    if callable(tolist):
        return cast("list[Any]", tolist())
    return cast("Iterable[Any]", chunk)


def _text(chunk: Chunk) -> str:
    return "\n".join(_line(item) for item in _items(chunk))


class LLMOperation(Operation):
    """An operation whose calls talk to a model, each written as steps (:mod:`rlm.lm.steps`).

    Subclasses write :meth:`leaf_steps`, and :meth:`combine_steps` / :meth:`fold_steps` when
    those calls use the model too (the defaults: :meth:`combine` without one; a fold is the
    leaf's steps, then the combine's). ``leaf`` and ``fold`` run the steps with the bound
    ``lm`` handle.
    """

    uses_lm: ClassVar[bool] = True

    @abstractmethod
    def leaf_steps(self, chunk: Chunk, params: Any) -> LMSteps[Any]:
        """The steps of one leaf: its requests, then its partial."""

    def combine_steps(self, partials: Sequence[Any], params: Any) -> LMSteps[Any]:
        """The steps of one combine (by default none: :meth:`combine`)."""
        yield from ()
        return self.combine(partials, params)

    def fold_steps(self, carry: Any, chunk: Chunk, params: Any) -> LMSteps[Any]:
        """The steps of one fold (by default the leaf's, then the combine's)."""
        partial = yield from self.leaf_steps(chunk, params)
        combined = yield from self.combine_steps([carry, partial], params)
        return combined

    def leaf(self, chunk: Chunk, params: Any) -> Any:
        return run_steps(self.leaf_steps(chunk, params), current_lm())

    def fold(self, carry: Any, chunk: Chunk, params: Any) -> Any:
        return run_steps(self.fold_steps(carry, chunk, params), current_lm())


# -- llm_map ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _MapParams:
    prompt: str
    call: _Call


class LLMMap(LLMOperation):
    """One LM reply per chunk, in input order."""

    name: ClassVar[str] = "llm_map"
    input_kind = "any"
    description: ClassVar[str] = "one LM reply per chunk: params.prompt with {chunk} replaced"

    def input_schemas(self, context: SchemaContext) -> list[dict[str, Any]]:
        prompt = string(_MAX_PROMPT, min_len=1, pattern=r"\{chunk\}")
        return _lm_schemas(self, context, {"prompt": prompt})

    def parse_params(self, params: Mapping[str, Any]) -> _MapParams:
        reader = ParamReader(self.name, params, allowed=("prompt", *_COMMON))
        prompt = reader.string("prompt", max_len=_MAX_PROMPT, non_empty=True)
        if "{chunk}" not in prompt:
            raise InvalidInput(
                "parameter 'prompt' of 'llm_map' must contain {chunk}, where each chunk's items go",
                field=field_of("prompt"),
            )
        return _MapParams(prompt=prompt, call=_read_call(reader))

    def leaf_steps(self, chunk: Chunk, params: _MapParams) -> LMSteps[list[str]]:
        if len(chunk) == 0:
            return []
        prompt = params.prompt.replace("{chunk}", _text(chunk))
        reply = yield params.call.request(prompt, "leaf")
        return [reply]

    def combine(self, partials: Sequence[list[str]], params: _MapParams) -> list[str]:
        return [reply for partial in partials for reply in partial]


# -- llm_classify -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _ClassifyParams:
    labels: tuple[str, ...]
    instruction: str
    call: _Call


_DEFAULT_INSTRUCTION = "Classify each numbered line into exactly one of the labels."


def classify_prompt(lines: Sequence[str], labels: Sequence[str], instruction: str) -> str:
    """The prompt ``llm_classify`` sends for one chunk (public: oracle servers parse it).

    The shape: the instruction, the labels one per line after ``Labels:``, the answer format,
    then the items numbered from 1 after ``Lines:``, one per line.
    """
    head = [instruction, "", "Labels:"]
    head += [f"- {label}" for label in labels]
    head += [
        "",
        f"Answer with exactly one line per item, in order, formatted `{CLASSIFY_ANSWER_FORMAT}`,"
        " using the labels exactly as written, and nothing else.",
        "",
        "Lines:",
    ]
    body = [f"{i}. {_line(line)}" for i, line in enumerate(lines, start=1)]
    return "\n".join(head + body)


_ANSWER_LINE = re.compile(r"^\s*(?:item\s*)?#?(\d+)\s*[:.)\]-]\s*(.+?)\s*$", re.IGNORECASE)


def parse_classification(reply: str, n: int, labels: Sequence[str]) -> dict[int, str]:
    """The labels a reply gives, by item number (1..n); items it does not label are absent.

    A line counts when it reads ``<number>: <label>`` (``.``, ``)`` or ``-`` may stand for
    the colon) with a number in 1..n and one of ``labels`` (case, surrounding quotes, back
    ticks and a final full stop are ignored). The first answer for a number wins.
    """
    canonical = {label.casefold(): label for label in labels}
    found: dict[int, str] = {}
    for raw in reply.splitlines():
        match = _ANSWER_LINE.match(raw)
        if match is None:
            continue
        number = int(match.group(1))
        text = match.group(2).strip("`'\"*. \t").casefold()
        label = canonical.get(text)
        if label is not None and 1 <= number <= n and number not in found:
            found[number] = label
    return found


class LLMClassify(LLMOperation):
    """Label every line with the model; count the labels."""

    name: ClassVar[str] = "llm_classify"
    input_kind = "any"
    description: ClassVar[str] = "label every line with the LM; {label: count}"
    lm_chunk_chars: ClassVar[int] = 4000

    def input_schemas(self, context: SchemaContext) -> list[dict[str, Any]]:
        label = {
            "type": "string",
            "maxLength": 200,
            "pattern": r"\S",  # not blank
            "not": {"pattern": r"^\s*[Uu][Nn][Pp][Aa][Rr][Ss][Ee][Dd]\s*$"},
        }
        labels = {"type": "array", "items": label, "minItems": 1, "maxItems": 256}
        return _lm_schemas(self, context, {"labels": labels}, instruction=nullable(string(10_000)))

    def parse_params(self, params: Mapping[str, Any]) -> _ClassifyParams:
        reader = ParamReader(self.name, params, allowed=("labels", "instruction", *_COMMON))
        raw = params.get("labels")
        if (
            not isinstance(raw, list)
            or not 1 <= len(raw) <= 256
            or not all(isinstance(x, str) and x.strip() and len(x) <= 200 for x in raw)
        ):
            raise InvalidInput(
                "parameter 'labels' of 'llm_classify' must be a list of 1 to 256 non-empty "
                "strings (at most 200 characters each)",
                field=field_of("labels"),
            )
        # A label given twice (ignoring case and surrounding spaces) is one label.
        firsts: dict[str, str] = {}
        for x in raw:
            firsts.setdefault(x.strip().casefold(), x.strip())
        if UNPARSED in firsts:
            raise InvalidInput(
                f"parameter 'labels' of 'llm_classify' must not be {UNPARSED!r}",
                field=field_of("labels"),
            )
        labels = tuple(firsts.values())
        instruction = reader.string("instruction", default=_DEFAULT_INSTRUCTION, max_len=10_000)
        return _ClassifyParams(labels=labels, instruction=instruction, call=_read_call(reader))

    def leaf_steps(self, chunk: Chunk, params: _ClassifyParams) -> LMSteps[dict[str, int]]:
        lines = [_line(item) for item in _items(chunk)]
        if not lines:
            return {}
        prompt = classify_prompt(lines, params.labels, params.instruction)
        call = params.call
        if call.max_tokens is None:
            # Room for every answer line ("<n>: <label>") at a generous 3 characters a token;
            # a provider default could cut a long chunk's answer short.
            longest = max(len(label) for label in params.labels)
            call = replace(call, max_tokens=len(lines) * ((longest + 8) // 3 + 2))
        reply = yield call.request(prompt, "leaf")
        found = parse_classification(reply, len(lines), params.labels)
        if len(found) < len(lines):
            # One more try, saying what was wrong. The prompt differs from the first, so a
            # memoised bad answer is not simply returned again.
            missing = [i for i in range(1, len(lines) + 1) if i not in found]
            retry = (
                f"{prompt}\n\nYour previous answer could not be read for item(s) "
                f"{', '.join(map(str, missing[:50]))}. Answer again: one line per item, "
                f"`{CLASSIFY_ANSWER_FORMAT}`, with one of the labels exactly as written."
            )
            second = yield call.request(retry, "retry")
            again = parse_classification(second, len(lines), params.labels)
            if len(again) > len(found):
                found = again
        counts: dict[str, int] = {}
        for label in found.values():
            counts[label] = counts.get(label, 0) + 1
        unparsed = len(lines) - len(found)
        if unparsed:
            counts[UNPARSED] = unparsed
        return counts

    def combine(
        self, partials: Sequence[dict[str, int]], params: _ClassifyParams
    ) -> dict[str, int]:
        total: dict[str, int] = {}
        for partial in partials:
            for label, count in partial.items():
                total[label] = total.get(label, 0) + count
        return total

    def finish(self, partial: dict[str, int], params: _ClassifyParams) -> dict[str, int]:
        out = {label: partial.get(label, 0) for label in params.labels}
        if partial.get(UNPARSED):
            out[UNPARSED] = partial[UNPARSED]
        return out


# -- llm_summarize ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _SummaryParams:
    instruction: str
    call: _Call


_SUMMARY_INSTRUCTION = "Summarise the following text concisely, keeping every important fact."


class LLMSummarize(LLMOperation):
    """A summary of the whole input: leaves summarise chunks, combines summarise summaries."""

    name: ClassVar[str] = "llm_summarize"
    input_kind = "any"
    description: ClassVar[str] = "summarise chunks, then summaries of summaries, with the LM"
    lm_chunk_chars: ClassVar[int] = 8000

    def input_schemas(self, context: SchemaContext) -> list[dict[str, Any]]:
        return _lm_schemas(self, context, {}, instruction=nullable(string(10_000)))

    def parse_params(self, params: Mapping[str, Any]) -> _SummaryParams:
        reader = ParamReader(self.name, params, allowed=("instruction", *_COMMON))
        instruction = reader.string("instruction", default=_SUMMARY_INSTRUCTION, max_len=10_000)
        return _SummaryParams(instruction=instruction, call=_read_call(reader))

    def leaf_steps(self, chunk: Chunk, params: _SummaryParams) -> LMSteps[str]:
        if len(chunk) == 0:
            return ""
        prompt = f"{params.instruction}\n\nText:\n{_text(chunk)}"
        reply = yield params.call.request(prompt, "leaf")
        return reply.strip()

    def combine(self, partials: Sequence[str], params: _SummaryParams) -> str:
        return run_steps(self.combine_steps(partials, params), current_lm())

    def combine_steps(self, partials: Sequence[str], params: _SummaryParams) -> LMSteps[str]:
        parts = [p for p in partials if p]
        if len(parts) <= 1:
            return parts[0] if parts else ""
        joined = "\n\n".join(f"Summary {i}:\n{p}" for i, p in enumerate(parts, start=1))
        prompt = (
            f"{params.instruction}\n\nThe text was summarised in {len(parts)} consecutive parts. "
            f"Write one summary of the whole from these summaries.\n\n{joined}"
        )
        reply = yield params.call.request(prompt, "combine")
        return reply.strip()

    def fold_steps(self, carry: str, chunk: Chunk, params: _SummaryParams) -> LMSteps[str]:
        if not carry:
            summary = yield from self.leaf_steps(chunk, params)
            return summary
        if len(chunk) == 0:
            return carry
        prompt = (
            f"{params.instruction}\n\nHere is the summary of the text so far:\n{carry}\n\n"
            f"Update it with the next part of the text, and answer with the updated summary "
            f"only.\n\nNext part:\n{_text(chunk)}"
        )
        reply = yield params.call.request(prompt, "fold")
        return reply.strip()
