"""The token scopes of the API document and the parser of the ``scope`` claim.

The API document names five scopes::

    rlm:execute        Execute tasks and agents
    rlm:read           Read task status and results
    rlm:admin          Administrative operations
    rlm:quota:read     View quota usage
    rlm:quota:manage   Manage quotas (enterprise)

Two of them imply others, so a route asks for the one scope it needs and a token never has to
spell out the obvious: ``rlm:admin`` implies every scope, ``rlm:quota:manage`` implies
``rlm:quota:read``. The expansion happens once, when a token is parsed, so a
:class:`~rlm.auth.principal.Principal` holds the full set it is allowed.

Unknown scopes are *ignored* when a token is verified: tokens from a shared identity provider
carry scopes of other services (``openid``, ``profile``, ...) and refusing them would lock those
users out, while dropping them grants nothing. When this service *mints* a token, an unknown
scope is a mistake of the caller and is refused (:func:`validate_scopes`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Final

from rlm.errors import InvalidInput

__all__ = [
    "ALL_SCOPES",
    "IMPLIED_SCOPES",
    "SCOPE_ADMIN",
    "SCOPE_EXECUTE",
    "SCOPE_QUOTA_MANAGE",
    "SCOPE_QUOTA_READ",
    "SCOPE_READ",
    "expand_scopes",
    "format_scope_claim",
    "parse_scope_claim",
    "validate_scopes",
]

SCOPE_EXECUTE: Final = "rlm:execute"
SCOPE_READ: Final = "rlm:read"
SCOPE_ADMIN: Final = "rlm:admin"
SCOPE_QUOTA_READ: Final = "rlm:quota:read"
SCOPE_QUOTA_MANAGE: Final = "rlm:quota:manage"

ALL_SCOPES: Final[frozenset[str]] = frozenset(
    {SCOPE_EXECUTE, SCOPE_READ, SCOPE_ADMIN, SCOPE_QUOTA_READ, SCOPE_QUOTA_MANAGE}
)
"""Every scope the API document defines."""

IMPLIED_SCOPES: Final[Mapping[str, frozenset[str]]] = MappingProxyType(
    {
        SCOPE_ADMIN: ALL_SCOPES,
        SCOPE_QUOTA_MANAGE: frozenset({SCOPE_QUOTA_MANAGE, SCOPE_QUOTA_READ}),
    }
)
"""Scopes a scope brings with it (the scope itself included)."""

# A token's scope claim is small; a huge one is an attack on the parser, not a real token.
_MAX_SCOPE_CLAIM_CHARS: Final = 4096


def expand_scopes(scopes: Iterable[str]) -> frozenset[str]:
    """Add the scopes implied by ``scopes`` (see :data:`IMPLIED_SCOPES`).

    Args:
        scopes: Known scope names.

    Returns:
        The closure of ``scopes`` under the implications.
    """
    expanded: set[str] = set()
    for scope in scopes:
        expanded.add(scope)
        expanded.update(IMPLIED_SCOPES.get(scope, ()))
    return frozenset(expanded)


def parse_scope_claim(claim: object) -> frozenset[str]:
    """Parse a token's ``scope`` claim into the known scopes it grants.

    The claim is a space-separated string (RFC 8693 / RFC 9068). A JSON list of strings is
    accepted too, because several identity providers emit one. Unknown scopes are dropped.

    Args:
        claim: The raw claim value; ``None`` (claim absent) grants nothing.

    Returns:
        The known scopes, with implied scopes added.

    Raises:
        ValueError: The claim is neither a string nor a list of strings, or is absurdly long.

    Example:
        >>> sorted(parse_scope_claim("rlm:read openid rlm:quota:manage"))
        ['rlm:quota:manage', 'rlm:quota:read', 'rlm:read']
    """
    if claim is None:
        return frozenset()
    if isinstance(claim, str):
        if len(claim) > _MAX_SCOPE_CLAIM_CHARS:
            raise ValueError("scope claim is too long")
        names = claim.split()
    elif isinstance(claim, list) and all(isinstance(item, str) for item in claim):
        if sum(len(item) + 1 for item in claim) > _MAX_SCOPE_CLAIM_CHARS:
            raise ValueError("scope claim is too long")
        names = list(claim)
    else:
        raise ValueError("scope claim must be a space-separated string")
    return expand_scopes(name for name in names if name in ALL_SCOPES)


def validate_scopes(scopes: Iterable[str]) -> frozenset[str]:
    """Check scopes a caller asks to put into a new token.

    Args:
        scopes: Scope names.

    Returns:
        The scopes as a frozenset (not expanded: the token carries what was asked for).

    Raises:
        InvalidInput: A scope is not one of :data:`ALL_SCOPES`.
    """
    requested = frozenset(scopes)
    unknown = sorted(requested - ALL_SCOPES)
    if unknown:
        raise InvalidInput(
            f"unknown scope(s): {', '.join(unknown)}",
            {"unknownScopes": unknown, "allowedScopes": sorted(ALL_SCOPES)},
            field="scopes",
        )
    return requested


def format_scope_claim(scopes: Iterable[str]) -> str:
    """Render scopes as the space-separated ``scope`` claim (sorted, so tokens are stable).

    Args:
        scopes: Scope names.

    Returns:
        The claim value, e.g. ``"rlm:execute rlm:read"``.
    """
    return " ".join(sorted(set(scopes)))
