"""Known prompt-injection phrasings, matched on the clean, lowered text.

Each pattern is a family of phrasings seen in published injection corpora (instruction
override, system-prompt extraction, role hijack, chat-template tokens smuggled into data). They
are deliberately narrow: "ignore the whitespace" or "show the prompt you wrote" are ordinary
requests, so a pattern needs both the verb and the thing attacked ("previous instructions",
"system prompt"). Matching runs on the text after :func:`rlm.security.unicode.clean`, lowered,
with any run of whitespace matching a space, so full-width letters, zero-width splits and line
breaks do not evade it.

An operator adds phrasings per org (the policy's ``extraPhrases``): plain phrases, matched as
words, never regular expressions (a bad pattern must not be able to stall the service).
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from rlm.security.unicode import lower_in_place

__all__ = ["INJECTION_PATTERNS", "InjectionMatch", "find_injections", "matching_form"]

_W = r"(?:[\w'-]+\W+)"  # one filler word


@dataclass(frozen=True, slots=True)
class _Pattern:
    name: str
    message: str
    starts: tuple[str, ...]  # the words a match begins with (found with str.find)
    regex: re.Pattern[str]  # matched at each such word's position
    needs: tuple[frozenset[str], ...] = ()  # words the text must hold, one of each set


def _p(
    name: str,
    message: str,
    starts: tuple[str, ...],
    rest: str,
    needs: tuple[frozenset[str], ...] = (),
) -> _Pattern:
    # Spaces in the patterns match any run of whitespace (line breaks included).
    alternatives = "|".join(re.escape(s).replace(r"\ ", " ") for s in starts)
    pattern = f"(?:{alternatives}){rest}".replace(" ?", r"\s*").replace(" ", r"\s+")
    return _Pattern(name, message, starts, re.compile(pattern), needs)


_INSTRUCTION_NOUNS = frozenset(
    {
        "instruction",
        "instructions",
        "prompt",
        "prompts",
        "rules",
        "directions",
        "directives",
        "guidelines",
        "guardrails",
        "constraints",
        "commands",
        "context",
        "programming",
        "policies",
    }
)
_HIDDEN = frozenset(["system", "hidden", "initial", "secret", "original", "developer", "internal"])
_PROMPT_NOUNS = frozenset(["prompt", "prompts", "instructions", "message", "messages", "rules"])


_OVERRIDE_VERBS = ("ignore", "disregard", "forget", "override", "bypass", "skip", "drop")
_REVEAL_VERBS = (
    "reveal", "show", "print", "repeat", "output", "display", "leak", "dump", "disclose",
    "recite", "tell me",
)  # fmt: skip
_ROLE = "tries to replace the model's role or lift its restrictions"
_ROLE_PHRASES = (
    "you will now act as", "act as if you have no", "pretend you have no",
    "pretend that you have no", "you have no restrictions", "you have no more restrictions",
    "you are no longer bound", "do anything now", "jailbreak mode", "unfiltered mode",
)  # fmt: skip

INJECTION_PATTERNS: Final[tuple[_Pattern, ...]] = (
    _p(
        "override",
        "asks to ignore or override earlier instructions",
        _OVERRIDE_VERBS,
        r"\W+"
        rf"{_W}{{0,3}}?(?:previous|prior|above|earlier|preceding|former|original|initial"
        r"|system|developer|your|all|any)\W+"
        rf"{_W}{{0,2}}?(?:instructions?|prompts?|rules|directions|directives|guidelines"
        r"|guardrails|constraints|commands|context|programming|policies)\b",
        (_INSTRUCTION_NOUNS,),
    ),
    _p(
        "extraction",
        "asks to reveal the system prompt or hidden instructions",
        _REVEAL_VERBS,
        r"\W+"
        rf"{_W}{{0,4}}?(?:system|hidden|initial|secret|original|developer|internal)\W+"
        r"(?:prompts?|instructions|messages?|rules)\b",
        (_HIDDEN, _PROMPT_NOUNS),
    ),
    *(
        _p("role", _ROLE, (start,), rest)
        for start, rest in (
            (
                "you are now",
                r"(?:,? (?:a|an|in|the))? (?:dan|unrestricted|unfiltered|uncensored|jailbroken"
                r"|evil|free (?:of|from)|without|developer mode|no longer)\b",
            ),
            (
                "from now on",
                r",? you (?:are|will) (?:be )?(?:dan|unrestricted|unfiltered|uncensored"
                r"|jailbroken|free|not|no longer|ignore)\b",
            ),
            ("developer mode", r" (?:enabled|on|activated)\b"),
            *((phrase, r"\b") for phrase in _ROLE_PHRASES),
        )
    ),
    _p(
        "new_instructions",
        "announces replacement instructions",
        ("new ", "updated ", "real ", "actual ", "true ", "revised "),
        r"(?:system )?(?:instructions|system prompt) ?:",
    ),
    _p(
        "template",
        "contains chat-template control tokens",
        ("<|",),
        r"(?:im_start|im_end|system|user|assistant|endoftext|eot_id|start_header_id)\|>",
    ),
    _p(
        "template",
        "contains chat-template control tokens",
        ("[inst]", "[/inst]", "<<sys>>", "<</sys>>", "<system>", "</system>"),
        "",
    ),
)
"""The built-in phrasings, by family (most telling family first)."""


def _head(start: str) -> str:
    return start.split()[0] if start[0].isalpha() else start


# Each start's first word (or token), with the families that may begin there.
_STARTS: Final[dict[str, tuple[_Pattern, ...]]] = {
    head: tuple(p for p in INJECTION_PATTERNS if any(_head(s) == head for s in p.starts))
    for head in dict.fromkeys(_head(s) for p in INJECTION_PATTERNS for s in p.starts)
}


@dataclass(frozen=True, slots=True)
class InjectionMatch:
    """One phrasing found.

    Attributes:
        pattern: The family (``override``, ``extraction``, ``role``, ``new_instructions``,
            ``template``) or ``phrase`` for an operator's phrase.
        message: What it does, for a person.
        start: Where it starts in the matching form (see :func:`matching_form`).
    """

    pattern: str
    message: str
    start: int


_MESSAGES: Final = {p.name: p.message for p in INJECTION_PATTERNS}
_ORDER: Final = {name: i for i, name in enumerate(_MESSAGES)}


def _order(item: tuple[str, int]) -> int:
    return _ORDER[item[0]]


_PUNCTUATION_TO_SPACE: Final = str.maketrans(dict.fromkeys(string.punctuation, " "))


def matching_form(clean_text: str) -> str:
    """The form patterns match: the clean text, lowered (offsets in it are offsets in it)."""
    return lower_in_place(clean_text)


def find_injections(clean_text: str, extra_phrases: Iterable[str] = ()) -> list[InjectionMatch]:
    """Known injection phrasings in ``clean_text`` (already :func:`clean`-ed).

    Args:
        clean_text: The text, after Unicode clean-up.
        extra_phrases: An operator's own phrases (matched as whole words, case-insensitive).

    Returns:
        One match per family found (its first occurrence), in pattern order.
    """
    form = matching_form(clean_text)
    words = set(form.translate(_PUNCTUATION_TO_SPACE).split())
    first: dict[str, int] = {}
    # Only start words the text holds are looked for (a set lookup), each with str.find,
    # and each family is matched only where its words start: far cheaper than a regex of
    # alternations searched across the whole text.
    for word, patterns in _STARTS.items():
        if word[0].isalpha() and word not in words:
            continue
        at = form.find(word)
        while at != -1:
            if at == 0 or not (form[at - 1].isalnum() or form[at - 1] == "_"):
                for pattern in patterns:
                    if pattern.name in first or not all(words & n for n in pattern.needs):
                        continue
                    if pattern.regex.match(form, at) is not None:
                        first[pattern.name] = at
            at = form.find(word, at + 1)
    found = [
        InjectionMatch(name, _MESSAGES[name], at) for name, at in sorted(first.items(), key=_order)
    ]
    for phrase in extra_phrases:
        wanted = matching_form(phrase).strip()
        if not wanted:
            continue
        phrase_re = re.escape(wanted).replace(r"\ ", r"\s+")
        m = re.search(rf"(?<!\w){phrase_re}(?!\w)", form)
        if m is not None:
            found.append(
                InjectionMatch("phrase", f"contains the blocked phrase {wanted!r}", m.start())
            )
    return found
