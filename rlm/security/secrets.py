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

from rlm.security.unicode import lower_in_place

__all__ = ["SecretFinding", "find_secrets", "mask"]

# Where a credential could start: a run of 20+ token characters (no '/', ':' or '.', so URLs
# and host names are not runs), or a literal a credential pattern begins with.
_TOKEN_RUN: Final = re.compile(r"[A-Za-z0-9+=_\-~]{20,}")
_LITERALS: Final = ("BEGIN", "PuTTY", "xox", "AKC", "eyJ", "AccountKey", "_authToken")
_LOWER_LITERALS: Final = ("aws",)  # found case-insensitively
_ARTIFACTORY: Final = re.compile(r"AP[0-9A-F][A-Za-z0-9]{8}")
_URL_CREDENTIALS: Final = re.compile(r"://[^\s/@]+:[^\s/@]*@")
# A secret-sounding word assigned a quoted value (or compared to one): where the keyword plugin
# can match (it needs quotes for text of unknown type, so nothing else can match it).
_KEYWORD_WORDS: Final = ("pass", "pwd", "secret", "key", "contrase")
_ASSIGNED: Final = re.compile(r"[\w\-\]'\"]{0,40}\s*(?::=|=>|[:=!]=?=?|\()\s*@?['\"`]")
_COMPARED: Final = re.compile(r"['\"`]\s*[!=]==?\s*\w*$")
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


def _windows(text: str, hits: list[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    """Merged spans of text around each hit, within its lines."""
    span: tuple[int, int] | None = None
    for start, end in sorted(hits):
        lo = max(text.rfind("\n", 0, start) + 1, start - _WINDOW)
        line_end = text.find("\n", end)
        hi = min(len(text) if line_end == -1 else line_end, end + _WINDOW)
        if span is not None and lo <= span[1]:
            span = (span[0], max(span[1], hi))
            continue
        if span is not None:
            yield span
        span = (lo, hi)
    if span is not None:
        yield span


def _occurrences(text: str, needle: str) -> Iterator[int]:
    at = text.find(needle)
    while at != -1:
        yield at
        at = text.find(needle, at + 1)


def _credential_hits(text: str, lower: str) -> list[tuple[int, int]]:
    hits = [m.span() for m in _TOKEN_RUN.finditer(text)]
    for literal in _LITERALS:
        hits.extend((at, at + len(literal)) for at in _occurrences(text, literal))
    for literal in _LOWER_LITERALS:
        hits.extend((at, at + len(literal)) for at in _occurrences(lower, literal))
    if "AP" in text:
        hits.extend(m.span() for m in _ARTIFACTORY.finditer(text))
    if "@" in text and "://" in text:
        hits.extend(m.span() for m in _URL_CREDENTIALS.finditer(text))
    return hits


def _keyword_hits(lower: str) -> list[tuple[int, int]]:
    hits = []
    for word in _KEYWORD_WORDS:
        for at in _occurrences(lower, word):
            end = at + len(word)
            if _ASSIGNED.match(lower, end) or _COMPARED.search(lower[max(0, at - 60) : at]):
                hits.append((at, end))
    return hits


def find_secrets(text: str) -> list[SecretFinding]:
    """The secrets in ``text``, each once, in order.

    Args:
        text: Any text (clean it first: a zero-width space inside a key hides it otherwise).

    Returns:
        The findings (at most 100), without the values.
    """
    found: dict[tuple[int, int], SecretFinding] = {}
    credential, keyword = _plugins()
    lower = lower_in_place(text)  # positions in it are positions in the text
    scans = [(_credential_hits(text, lower), credential), (_keyword_hits(lower), keyword)]
    false_positive = _false_positive()
    for hits, plugins in scans:
        for lo, hi in _windows(text, hits):
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
