"""Secrets in text, found by Yelp's maintained ``detect-secrets`` plugins.

Every regex plugin of ``detect-secrets`` is used (AWS, Azure, IBM and Cloudant credentials,
private keys, JWTs, GitHub/GitLab/Slack/Stripe/OpenAI/Twilio/... tokens, credentials in URLs),
plus its keyword plugin (``password = "..."``, quotes required, as for a file of unknown type)
and its false-positive filters (templated values, sequences, UUIDs, indirect references).
Not used: the public-IP plugin (an address is not a secret) and the two high-entropy plugins,
which flag every hash, id and UUID in ordinary data.

Running every plugin over every line costs about 8 ms per 10 KB, so the scan has gates of its
own: one pass finds the places a credential could start (a run of 20+ token characters, a key
header, a URL with credentials, a service prefix) and the credential plugins read only the
text around them; the keyword plugin reads only around a secret-sounding word assigned a
quoted value. Text with neither (most prose and numbers) costs one regex pass.

Findings carry the kind of secret and where it is, never its value; :func:`mask` replaces the
values with ``*`` of the same length, so a masked text never grows and holds no secret.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["SecretFinding", "find_secrets", "mask"]

# Where a secret could start. A token-looking run of 20+ characters, a key header, a URL with
# user:password@, or a service prefix: the credential plugins look there. A secret-sounding
# word followed by an assignment and a quote: the keyword plugin looks there (it needs quotes
# for text of unknown type, so nothing else can match it).
_TOKEN_CHARS: Final = r"A-Za-z0-9+/=_\-.:~"
_CREDENTIAL_GATE: Final = re.compile(
    rf"(?<![{_TOKEN_CHARS}])[{_TOKEN_CHARS}]{{20,}}"
    r"|BEGIN|PuTTY|xox[abposr]-|AKC[A-Za-z0-9]{10}|AP[0-9A-F][A-Za-z0-9]{8}"
    r"|://[^\s/@]+:[^\s/@]*@"
)
_KEYWORD_GATE: Final = re.compile(
    r"(?i:pass|pwd|secret|key|contrase)[\w\-\]'\"]{0,40}\s*(?::=|=>|[:=!]=?=?|\()\s*@?['\"`]"
    r"|['\"`]\s*[!=]==?\s*\w*(?i:pass|pwd|secret|key|contrase)"
)
_KEYWORD_WORDS: Final = ("pass", "pwd", "secret", "key", "contrase")
# Text read around each gate hit: the keyword plugins look about 60 characters back.
_WINDOW: Final = 160
_MAX_FINDINGS: Final = 100

# The plugins' names that are cloud credentials or keys (the rest are service tokens).
_KINDS: Final = {
    "AWSKeyDetector": "cloud_credential",
    "AzureStorageKeyDetector": "cloud_credential",
    "IbmCloudIamDetector": "cloud_credential",
    "IbmCosHmacDetector": "cloud_credential",
    "CloudantDetector": "cloud_credential",
    "SoftlayerDetector": "cloud_credential",
    "PrivateKeyDetector": "private_key",
    "JwtTokenDetector": "jwt",
    "BasicAuthDetector": "url_credentials",
    "KeywordDetector": "keyword",
}
_EXCLUDED: Final = frozenset(
    {"IPPublicDetector", "Base64HighEntropyString", "HexHighEntropyString"}
)
_PEM_BLOCK: Final = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----.*?-----END [A-Z0-9 ]*PRIVATE KEY"
    r"(?: BLOCK)?-----",
    re.DOTALL,
)


@dataclass(frozen=True, slots=True)
class SecretFinding:
    """A secret found (its value is never kept).

    Attributes:
        secret_type: ``detect-secrets``' name for it (``AWS Access Key``, ``Private Key``...).
        kind: ``cloud_credential``, ``private_key``, ``jwt``, ``url_credentials``,
            ``keyword`` or ``api_token``.
        start: Where the value starts in the text scanned.
        length: The value's length.
    """

    secret_type: str
    kind: str
    start: int
    length: int


@functools.cache
def _plugins() -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """The credential plugins, and the keyword plugin."""
    # Imported on first use: detect-secrets loads its plugins (and requests) at import.
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

    mapping: dict[str, type] = get_mapping_from_secret_type_to_class()
    classes = sorted(mapping.values(), key=lambda c: c.__name__)
    used = [cls() for cls in classes if cls.__name__ not in _EXCLUDED]
    keyword = tuple(p for p in used if p.__class__.__name__ == "KeywordDetector")
    return tuple(p for p in used if p.__class__.__name__ != "KeywordDetector"), keyword


@functools.cache
def _false_positive() -> Any:
    from detect_secrets.filters.heuristic import (
        is_indirect_reference,
        is_likely_id_string,
        is_potential_uuid,
        is_sequential_string,
        is_templated_secret,
    )

    def check(secret: str, line: str, plugin: Any) -> bool:
        return bool(
            is_templated_secret(secret)
            or is_sequential_string(secret)
            or is_potential_uuid(secret)
            or is_likely_id_string(secret, line, plugin)
            or (plugin.__class__.__name__ == "KeywordDetector" and is_indirect_reference(line))
        )

    return check


def _windows(text: str, gate: re.Pattern[str]) -> Iterator[tuple[int, int]]:
    """Merged spans of text around each gate hit, within its lines."""
    span: tuple[int, int] | None = None
    for m in gate.finditer(text):
        lo = max(text.rfind("\n", 0, m.start()) + 1, m.start() - _WINDOW)
        line_end = text.find("\n", m.end())
        hi = min(len(text) if line_end == -1 else line_end, m.end() + _WINDOW)
        if span is not None and lo <= span[1]:
            span = (span[0], max(span[1], hi))
            continue
        if span is not None:
            yield span
        span = (lo, hi)
    if span is not None:
        yield span


def find_secrets(text: str) -> list[SecretFinding]:
    """The secrets in ``text``, each once, in order.

    Args:
        text: Any text (clean it first: a zero-width space inside a key hides it otherwise).

    Returns:
        The findings (at most 100), without the values.
    """
    found: dict[tuple[int, int], SecretFinding] = {}
    credential, keyword = _plugins()
    scans = [(_CREDENTIAL_GATE, credential)]
    folded = text.casefold() if not text.isascii() else text.lower()
    if any(word in folded for word in _KEYWORD_WORDS):
        scans.append((_KEYWORD_GATE, keyword))
    false_positive = _false_positive()
    for gate, plugins in scans:
        for lo, hi in _windows(text, gate):
            for line_start, line in _lines(text, lo, hi):
                for plugin in plugins:
                    for value in plugin.analyze_string(line):
                        if not value or false_positive(value, line, plugin):
                            continue
                        start, length = _token_span(line, value)
                        key = (line_start + start, length)
                        if key not in found:
                            name = plugin.__class__.__name__
                            found[key] = SecretFinding(
                                plugin.secret_type, _KINDS.get(name, "api_token"), *key
                            )
                        if len(found) >= _MAX_FINDINGS:
                            return sorted(found.values(), key=lambda f: f.start)
    return sorted(found.values(), key=lambda f: f.start)


_TOKEN: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=_-.~")


def _token_span(line: str, value: str) -> tuple[int, int]:
    """Where ``value`` is in ``line``, widened to the whole token around it (some plugins
    report only a prefix they captured, e.g. ``ghp`` of a GitHub token)."""
    start = max(line.find(value), 0)
    end = start + len(value)
    while start > 0 and line[start - 1] in _TOKEN and value[0] in _TOKEN:
        start -= 1
    while end < len(line) and line[end] in _TOKEN and value[-1] in _TOKEN:
        end += 1
    return start, end - start


def _lines(text: str, lo: int, hi: int) -> Iterator[tuple[int, str]]:
    at = lo
    for line in text[lo:hi].split("\n"):
        if line.strip():
            yield at, line
        at += len(line) + 1


def mask(text: str, findings: list[SecretFinding]) -> str:
    """``text`` with each secret value (and each whole PEM private-key block) replaced by
    ``*`` of the same length: never longer, and no secret left for a second scan to find."""
    if not findings:
        return text
    chars = list(text)
    for f in findings:
        chars[f.start : f.start + f.length] = "*" * f.length
    if any(f.kind == "private_key" for f in findings):
        for m in _PEM_BLOCK.finditer(text):
            chars[m.start() : m.end()] = "*" * (m.end() - m.start())
    return "".join(chars)
