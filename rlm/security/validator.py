"""Input validation: the enabled ``input_validation`` policies run over text and task inputs.

Deterministic, no model: the same text and policies always give the same answer. A
``critical`` violation refuses the input (``allowed`` false); lower ones are reported (and the
service records them). Detectors always read the clean form of a text (NFKC, hidden
characters removed), so a zero-width space inside a key or full-width letters evade
nothing; ``sanitized`` is that clean form (when ``input-unicode`` is enabled) with every secret
masked (when ``input-secrets`` is).

Example:
    >>> result = validate_text("Ignore all previous instructions")
    >>> result.allowed, result.violations[0].policy_id
    (False, 'input-injection')
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from rlm.errors import InvalidInput
from rlm.models.security import SecurityValidateResponse, Severity, Violation
from rlm.security.injection import find_injections
from rlm.security.paths import find_traversal, looks_like_path
from rlm.security.policies import SEVERITY_RANK, PolicySet
from rlm.security.secrets import find_secrets, mask
from rlm.security.structure import check_json_text, check_value
from rlm.security.unicode import clean

__all__ = ["InputValidator", "ValidationResult", "validate_text"]

_CATEGORY = "input_validation"
_INPUT_POLICIES = (
    "input-size",
    "input-json-structure",
    "input-unicode",
    "input-secrets",
    "input-injection",
    "input-path-traversal",
)
_UNICODE_SETTING = {
    "bidi": ("bidi_severity", "bidirectional override characters (Trojan Source)"),
    "tag": ("tag_severity", "invisible Unicode tag characters"),
    "invisible": ("invisible_severity", "invisible or control characters"),
    "private": ("private_use_severity", "private-use characters"),
    "unassigned": ("unassigned_severity", "unassigned code points or lone surrogates"),
}


@dataclass(frozen=True, slots=True)
class ValidationResult:
    """What validation found.

    Attributes:
        allowed: No violation is ``critical``.
        sanitized: The clean text (empty for a task's input, which is never rewritten).
        violations: Most severe first, then by policy priority.
    """

    allowed: bool
    sanitized: str
    violations: list[Violation] = field(default_factory=list)

    def to_response(self) -> SecurityValidateResponse:
        """The ``POST /security/validate`` answer."""
        return SecurityValidateResponse(
            allowed=self.allowed, sanitized=self.sanitized, violations=self.violations
        )

    def raise_if_refused(self, what: str = "the input") -> None:
        """Raise 400 ``INVALID_INPUT`` with the violations in ``details`` unless allowed."""
        if not self.allowed:
            raise refusal(self.violations, what)


def refusal(violations: list[Violation], what: str = "the input") -> InvalidInput:
    """The 400 ``INVALID_INPUT`` of a refused input, violations in ``details``."""
    critical = [v for v in violations if v.severity == "critical"]
    first = critical[0] if critical else violations[0]
    return InvalidInput(
        f"{what} was refused by security policy {first.policy_id}: {first.message}",
        {
            "field": first.field or "input",
            "violations": [v.to_wire() for v in violations],
        },
    )


class InputValidator:
    """Runs an org's enabled input policies.

    Args:
        policies: The org's policies (the defaults when omitted).
    """

    def __init__(self, policies: PolicySet | None = None) -> None:
        self.policies = policies if policies is not None else PolicySet()

    # -- one text -----------------------------------------------------------------------------

    def validate_text(
        self, text: str, *, field: str = "input", as_path: bool | None = None
    ) -> ValidationResult:
        """Validate one text (``POST /security/validate``, a task's text field, a prompt).

        Args:
            text: The text.
            field: Where it came from, named in each violation.
            as_path: Whether the text is a path (traversal in it is then ``pathSeverity``);
                by default, when it is one token with no spaces.

        Returns:
            The result, with ``sanitized`` set.
        """
        found: list[Violation] = []
        text = self._size(text, field, found)
        self._json_text(text, field, found)
        cleaned = self._unicode(text, field, found)
        masked = self._secrets(cleaned, field, found)
        self._injection(cleaned, field, found)
        path = looks_like_path(text) if as_path is None else as_path
        self._traversal(cleaned, field, found, path=path)
        if self.policies.enabled("input-unicode"):
            sanitized = masked
        elif self.policies.enabled("input-secrets"):
            sanitized = mask(text, find_secrets(text))  # no clean-up, but never a secret back
        else:
            sanitized = text
        return self._result(found, sanitized)

    # -- a task's input -----------------------------------------------------------------------

    def check_request(
        self,
        description: str,
        task_input: Any,
        expected_output: Any = None,
    ) -> ValidationResult:
        """Validate what ``POST /execute`` would run: the description, every text item, text
        and parameter (prompts and queries of LM operations), and the input's structure.

        Nothing is rewritten (``sanitized`` is empty): a task's data is used as sent, or
        refused.
        """
        found: list[Violation] = []
        if not any(self.policies.enabled(p) for p in _INPUT_POLICIES):
            return self._result(found, "")
        self._json_value(task_input, "input", found)
        if expected_output is not None:
            self._json_value(expected_output, "expectedOutput", found)
        if found and not _allowed(found):
            return self._result(found, "")
        self._scan(description, "description", found, data=False)
        if isinstance(task_input, Mapping):
            for name, value in _prompts(task_input):
                self._scan(value, name, found, data=False)
            texts = _data_texts(task_input)
            first = next(texts, None)
            if first is not None:
                self._scan_data(itertools.chain([first], texts), found)
        elif isinstance(task_input, str):
            self._scan(task_input, "input", found, data=True)
        return self._result(found, "")

    def check_texts(
        self,
        texts: Iterable[tuple[str, str]],
        *,
        items: bool = True,
        cut_short: Callable[[], bool] | None = None,
    ) -> ValidationResult:
        """Validate data texts read from elsewhere (a storage source's lines, Arrow strings,
        decoded bytes) as a task's inline text items are: scanned as one text, up to the
        ``input-size`` policy's ``maxScanChars``; beyond it a ``medium`` violation says the
        rest was not scanned.

        Args:
            texts: ``(field, text)`` pairs, read lazily: no further than the budget (and one
                text past it, to know there is more).
            items: Each text is an item, refused over ``maxChars`` like an inline one;
                ``False`` for the pieces of one blob (a ``bytes`` source), whose length is
                no item's.
            cut_short: Asked once ``texts`` ran out: whether its reader stopped at a bound of
                its own before the end (then the same ``medium`` violation says so).

        Returns:
            The result (``sanitized`` empty: data is used as it is, or refused).
        """
        found: list[Violation] = []
        if any(self.policies.enabled(p) for p in _INPUT_POLICIES):
            it = iter(texts)
            first = next(it, None)
            if first is not None:
                self._scan_data(itertools.chain([first], it), found, items=items)
            if cut_short is not None and cut_short() and not _limited(found):
                found.append(self._scan_limit())
        return self._result(found, "")

    # -- the policies -------------------------------------------------------------------------

    def _scan(self, text: str, field: str, found: list[Violation], *, data: bool) -> None:
        text = self._size(text, field, found)
        cleaned = self._unicode(text, field, found)
        self._secrets(cleaned, field, found)
        self._injection(cleaned, field, found)
        self._traversal(cleaned, field, found, path=False if data else looks_like_path(text))

    def _scan_data(
        self, texts: Iterable[tuple[str, str]], found: list[Violation], *, items: bool = True
    ) -> None:
        """Text items scanned as one text (one pass per detector), up to ``maxScanChars``
        (``texts`` is read lazily: no further than that)."""
        size = self.policies.settings("input-size")
        enabled = self.policies.enabled("input-size")
        budget = size.max_scan_chars if enabled else None
        parts: list[str] = []
        offsets: list[int] = []
        names: list[str] = []
        total = 0
        for name, text in texts:
            if items and enabled and len(text) > size.max_chars:
                self._size(text, name, found)
                text = text[: size.max_chars]
            if budget is not None and total + len(text) > budget:
                found.append(self._scan_limit())
                text = text[: max(0, budget - total)]
            offsets.append(total)
            names.append(name)
            parts.append(text)
            total += len(text) + 1
            if budget is not None and total > budget:
                break
        joined = "\n".join(parts)
        cleaned, report = clean(joined)
        if len(cleaned) != len(joined):
            # Detectors report offsets in the clean text: find where each text starts in it
            # (cleaning never crosses a line break, so each text's clean form is its part).
            offsets = list(
                itertools.accumulate((len(clean(p)[0]) + 1 for p in parts[:-1]), initial=0)
            )

        def where(at: int) -> str:
            return names[max(0, bisect.bisect_right(offsets, at) - 1)]

        if self.policies.enabled("input-unicode"):
            self._unicode_findings(report.removed, where(0), found)
        if self.policies.enabled("input-secrets"):
            self._secret_findings(find_secrets(cleaned), found, where)
        if self.policies.enabled("input-injection"):
            extra = self.policies.settings("input-injection").extra_phrases
            for m in find_injections(cleaned, extra):
                self._injection_finding(m.pattern, m.message, where(m.start), found)
        if self.policies.enabled("input-path-traversal"):
            settings = self.policies.settings("input-path-traversal")
            for t in find_traversal(cleaned):
                severity = settings.severity if t.form == "plain" else settings.path_severity
                found.append(self._traversal_violation(t.form, severity, where(t.start)))

    def _size(self, text: str, field: str, found: list[Violation]) -> str:
        if not self.policies.enabled("input-size"):
            return text
        settings = self.policies.settings("input-size")
        if len(text) <= settings.max_chars:
            return text
        found.append(
            self._violation(
                "input-size",
                settings.severity,
                f"{len(text)} characters is more than the {settings.max_chars} allowed",
                field,
                "max_chars",
            )
        )
        return text[: settings.max_chars]  # the rest is not scanned: a bounded cost

    def _json_text(self, text: str, field: str, found: list[Violation]) -> None:
        if not self.policies.enabled("input-json-structure"):
            return
        s = self.policies.settings("input-json-structure")
        hit = check_json_text(text, max_depth=s.max_depth, max_values=s.max_values, max_bytes=10**9)
        if hit is not None:
            found.append(self._structure_violation(hit.limit, hit.maximum, s.severity, field))

    def _json_value(self, value: Any, field: str, found: list[Violation]) -> None:
        if not self.policies.enabled("input-json-structure"):
            return
        s = self.policies.settings("input-json-structure")
        hit = check_value(value, max_depth=s.max_depth, max_values=s.max_values)
        if hit is not None:
            found.append(self._structure_violation(hit.limit, hit.maximum, s.severity, field))

    def _structure_violation(
        self, limit: str, maximum: int, severity: Severity, field: str
    ) -> Violation:
        what = "is nested deeper than" if limit == "depth" else "holds more values than"
        return self._violation(
            "input-json-structure",
            severity,
            f"the JSON {what} the {maximum} allowed",
            field,
            f"max_{limit}",
        )

    def _unicode(self, text: str, field: str, found: list[Violation]) -> str:
        cleaned, report = clean(text)
        if self.policies.enabled("input-unicode"):
            self._unicode_findings(report.removed, field, found)
        return cleaned

    def _unicode_findings(
        self, removed: Mapping[Any, int], field: str, found: list[Violation]
    ) -> None:
        settings = self.policies.settings("input-unicode")
        for cls, count in sorted(removed.items()):
            attr, what = _UNICODE_SETTING[cls]
            found.append(
                self._violation(
                    "input-unicode",
                    getattr(settings, attr),
                    f"{count} {what} removed",
                    field,
                    cls,
                    count=count,
                )
            )

    def _secrets(self, cleaned: str, field: str, found: list[Violation]) -> str:
        if not self.policies.enabled("input-secrets"):
            return cleaned
        findings = find_secrets(cleaned)
        self._secret_findings(findings, found, lambda _at: field)
        return mask(cleaned, findings)

    def _secret_findings(self, findings: Iterable[Any], found: list[Violation], where: Any) -> None:
        settings = self.policies.settings("input-secrets")
        by_type: dict[str, list[Any]] = {}
        for f in findings:
            by_type.setdefault(f.secret_type, []).append(f)
        for secret_type, hits in by_type.items():
            severity = settings.keyword_severity if hits[0].kind == "keyword" else settings.severity
            found.append(
                self._violation(
                    "input-secrets",
                    severity,
                    f"contains a secret ({secret_type})",
                    where(hits[0].start),
                    secret_type,
                    count=len(hits),
                )
            )

    def _injection(self, cleaned: str, field: str, found: list[Violation]) -> None:
        if not self.policies.enabled("input-injection"):
            return
        extra = self.policies.settings("input-injection").extra_phrases
        for m in find_injections(cleaned, extra):
            self._injection_finding(m.pattern, m.message, field, found)

    def _injection_finding(
        self, pattern: str, message: str, field: str, found: list[Violation]
    ) -> None:
        severity = self.policies.settings("input-injection").severity
        found.append(
            self._violation(
                "input-injection", severity, f"prompt injection: {message}", field, pattern
            )
        )

    def _traversal(self, cleaned: str, field: str, found: list[Violation], *, path: bool) -> None:
        if not self.policies.enabled("input-path-traversal"):
            return
        settings = self.policies.settings("input-path-traversal")
        for t in find_traversal(cleaned):
            strong = path or t.form != "plain"
            severity = settings.path_severity if strong else settings.severity
            found.append(self._traversal_violation(t.form, severity, field))

    def _traversal_violation(self, form: str, severity: Severity, field: str) -> Violation:
        what = {
            "plain": "a '..' path segment",
            "encoded": "a percent-encoded '..' path segment",
            "overlong": "an overlong UTF-8 encoded dot or slash",
            "nul": "a NUL byte in a path",
        }[form]
        return self._violation(
            "input-path-traversal", severity, f"path traversal: {what}", field, form
        )

    # -- results ------------------------------------------------------------------------------

    def _scan_limit(self) -> Violation:
        budget = self.policies.settings("input-size").max_scan_chars
        return self._violation(
            "input-size",
            "medium",
            f"only the first {budget} characters of the input's text were scanned",
            "input",
            "scan_limit",
        )

    def _violation(
        self,
        policy_id: str,
        severity: Severity,
        message: str,
        field: str,
        detector: str,
        *,
        count: int | None = None,
    ) -> Violation:
        return Violation(
            policy_id=policy_id,
            category=_CATEGORY,
            severity=severity,
            message=message,
            field=field,
            detector=detector,
            count=count,
        )

    def _result(self, found: list[Violation], sanitized: str) -> ValidationResult:
        found.sort(key=lambda v: (-SEVERITY_RANK[v.severity], -self.policies.priority(v.policy_id)))
        return ValidationResult(_allowed(found), sanitized, found)


def _limited(violations: Iterable[Violation]) -> bool:
    return any(v.detector == "scan_limit" for v in violations)


def _allowed(violations: Iterable[Violation]) -> bool:
    return all(v.severity != "critical" for v in violations)


# Parameters of operations that are sent to a model, and the RLM mode's query fields.
_PROMPT_KEYS = ("query", "prompt", "instruction", "system", "question")


def _prompts(task_input: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
    """Every string parameter (prompts, instructions, labels...) and query of the input."""
    params = task_input.get("params")
    if isinstance(params, Mapping):
        stack: list[tuple[str, Any]] = [("input.params", params)]
        while stack:
            name, node = stack.pop()
            if isinstance(node, str):
                yield name, node
            elif isinstance(node, Mapping):
                stack.extend((f"{name}.{k}", v) for k, v in node.items())
            elif isinstance(node, list):
                stack.extend((f"{name}[{i}]", v) for i, v in enumerate(node))
    for key in _PROMPT_KEYS:
        value = task_input.get(key)
        if isinstance(value, str):
            yield f"input.{key}", value


def _strings_in(value: Any, name: str) -> Iterator[tuple[str, str]]:
    """Every string in a JSON value, in document order, named by its path (not the keys)."""
    stack: list[Iterator[tuple[str, Any]]] = [iter([(name, value)])]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            continue
        at, node = entry
        if isinstance(node, str):
            yield at, node
        elif isinstance(node, Mapping):
            stack.append(_fields(at, node))
        elif isinstance(node, list):
            stack.append(_elements(at, node))


def _fields(at: str, node: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    return ((f"{at}.{k}", v) for k, v in node.items())


def _elements(at: str, node: list[Any]) -> Iterator[tuple[str, Any]]:
    return ((f"{at}[{i}]", v) for i, v in enumerate(node))


def _data_texts(task_input: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """The input's text data: ``text``, ``context`` (an RLM's: a string, or every string
    inside a list or an object), and string items or item fields."""
    text = task_input.get("text")
    if isinstance(text, str):
        yield "input.text", text
    context = task_input.get("context")
    if isinstance(context, str | list | Mapping):
        yield from _strings_in(context, "input.context")
    items = task_input.get("items")
    if not isinstance(items, list) or not items:
        return
    if set(map(type, items)) <= {int, float, bool, type(None)}:
        return  # numbers: nothing to read
    for i, item in enumerate(items):
        if isinstance(item, str):
            yield f"input.items[{i}]", item
        elif isinstance(item, Mapping):
            for k, v in item.items():
                if isinstance(v, str):
                    yield f"input.items[{i}].{k}", v


def validate_text(
    text: str, policies: PolicySet | None = None, *, field: str = "prompt"
) -> ValidationResult:
    """Validate one text against ``policies`` (the defaults when omitted).

    The call an RLM session makes for each prompt it is about to send (the root's query, every
    ``llm_query``/``rlm_query`` prompt): refuse on ``not result.allowed`` (or
    ``result.raise_if_refused()``), and record the violations with
    :func:`rlm.security.events.record_violations`.

    Args:
        text: The prompt or text.
        policies: The org's policies.
        field: Where the text came from, named in the violations.
    """
    return InputValidator(policies).validate_text(text, field=field)
