"""Minting and verifying the service's JWTs.

A token carries::

    iss, aud, iat, nbf, exp, jti   registered claims (exp, iss, aud and sub are required)
    sub                            the user id
    scope                          space-separated scopes, e.g. "rlm:execute rlm:read"
    tier                           anonymous | user | power_user | admin | enterprise
    team, org                      optional: who else the usage is charged to

Verification never trusts the token's header: the algorithm must be in the configured
allow-list *and* in the list of the key that verifies it (see :mod:`rlm.auth.keys`). A token
without ``tier`` is a ``user`` token; a token naming an unknown tier is refused, because
guessing a tier for it could grant limits nobody meant to grant. Every failure is an
:class:`~rlm.errors.Unauthorized` whose ``details.reason`` is a short phrase; the token itself is
never echoed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Final

import jwt
from jwt.exceptions import InvalidJTIError, InvalidSubjectError

from rlm.auth.keys import KeySet, SigningKey, VerificationKey
from rlm.auth.principal import ANONYMOUS_PREFIX, Principal
from rlm.auth.scopes import format_scope_claim, parse_scope_claim, validate_scopes
from rlm.auth.settings import ASYMMETRIC_ALGORITHMS, AuthSettings
from rlm.auth.tiers import DEFAULT_TIER, is_tier
from rlm.errors import InvalidInput, Unauthorized

__all__ = [
    "REQUIRED_CLAIMS",
    "authenticate",
    "authenticate_async",
    "bearer_token",
    "expired_principal",
    "issue_token",
    "verify_token",
    "verify_token_async",
    "verify_token_claims_async",
]

REQUIRED_CLAIMS: Final[tuple[str, ...]] = ("exp", "iss", "aud", "sub")
"""Claims every token must carry."""

# Real tokens are well under 2 KiB; refusing large ones early bounds the parsing work.
_MAX_TOKEN_CHARS: Final = 8192
_MAX_ID_CHARS: Final = 256

# Most specific first: InvalidSignatureError is a DecodeError, and so on.
_REASONS: Final[tuple[tuple[type[jwt.PyJWTError], str], ...]] = (
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.ImmatureSignatureError, "token not yet valid"),
    (jwt.InvalidAudienceError, "wrong audience"),
    (jwt.InvalidIssuerError, "wrong issuer"),
    (jwt.InvalidSignatureError, "invalid signature"),
    (jwt.InvalidAlgorithmError, "algorithm not allowed"),
    (jwt.InvalidIssuedAtError, "invalid claim: iat"),
    (InvalidSubjectError, "invalid claim: sub"),
    (InvalidJTIError, "invalid claim: jti"),
    (jwt.InvalidKeyError, "invalid key"),
    (jwt.DecodeError, "malformed token"),
)


def _unauthorized(reason: str) -> Unauthorized:
    return Unauthorized(f"invalid token: {reason}", {"reason": reason})


def _reason(exc: jwt.PyJWTError) -> str:
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"missing claim: {exc.claim}"
    for cls, reason in _REASONS:
        if isinstance(exc, cls):
            return reason
    return "invalid token"


def issue_token(
    sub: str,
    scopes: Iterable[str],
    tier: str,
    team: str | None = None,
    org: str | None = None,
    ttl_s: int | None = None,
    *,
    settings: AuthSettings,
    key: SigningKey,
    now: float | None = None,
) -> str:
    """Mint a signed token.

    Args:
        sub: The user id.
        scopes: Scopes to grant (each one of :data:`~rlm.auth.scopes.ALL_SCOPES`).
        tier: The rate-limit tier.
        team: Team the usage is also charged to.
        org: Organisation the usage is also charged to.
        ttl_s: Lifetime in seconds; ``settings.default_ttl_s`` when ``None``.
        settings: Issuer, audience and lifetime limits.
        key: The signing key (see :func:`~rlm.auth.keys.load_signing_key`).
        now: Issue time as a Unix timestamp (for tests); the wall clock when ``None``.

    Returns:
        The compact JWS.

    Raises:
        InvalidInput: An unknown scope or tier, an empty or reserved ``sub``, or a lifetime
            outside ``1..settings.max_ttl_s``.

    Example:
        ``issue_token("alice", ["rlm:execute"], "user", settings=auth, key=signing_key)``
    """
    _check_id(sub, "sub")
    if sub.startswith(ANONYMOUS_PREFIX):
        raise InvalidInput(f"user ids may not start with {ANONYMOUS_PREFIX!r}", field="sub")
    granted = validate_scopes(scopes)
    if not is_tier(tier):
        raise InvalidInput(f"unknown tier {tier!r}", field="tier")
    for name, value in (("team", team), ("org", org)):
        if value is not None:
            _check_id(value, name)
    lifetime = settings.default_ttl_s if ttl_s is None else ttl_s
    if not 0 < lifetime <= settings.max_ttl_s:
        raise InvalidInput(
            f"token lifetime must be between 1 and {settings.max_ttl_s} s",
            {"maxTtlS": settings.max_ttl_s},
            field="ttlS",
        )
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": settings.issuer,
        "aud": settings.audience,
        "sub": sub,
        "iat": issued,
        "nbf": issued,
        "exp": issued + lifetime,
        "jti": uuid.uuid4().hex,
        "scope": format_scope_claim(granted),
        "tier": tier,
    }
    if team is not None:
        claims["team"] = team
    if org is not None:
        claims["org"] = org
    headers = {"kid": key.kid} if key.kid is not None else None
    return jwt.encode(claims, key.key, algorithm=key.algorithm, headers=headers)


def _check_id(value: object, name: str) -> None:
    if not isinstance(value, str) or not value.strip() or len(value) > _MAX_ID_CHARS:
        raise InvalidInput(f"{name} must be a non-empty string of at most 256 chars", field=name)


def verify_token(token: str, keys: KeySet, settings: AuthSettings) -> Principal:
    """Verify a token and return who it speaks for.

    Checks, in order: size and shape; the header ``alg`` against ``settings.algorithms``; the
    signature with a key bound to that algorithm; ``exp``/``nbf``/``iat`` (with
    ``settings.leeway_s``), ``iss``, ``aud``, and the presence of exp, iss, aud and sub; then the
    service's own claims (``scope``, ``tier``, ``team``, ``org``).

    A JWKS lookup (``settings.jwks_url``) blocks on the network when the document must be
    fetched; on an event loop use :func:`verify_token_async`.

    Args:
        token: The compact JWS (without ``Bearer``).
        keys: The verification keys (see :func:`~rlm.auth.keys.load_verification_keys`).
        settings: Issuer, audience, algorithm allow-list and leeway.

    Returns:
        The principal: ``sub``, known scopes (implied ones added), tier, team, org, ``jti``.

    Raises:
        Unauthorized: For any failure, with ``details.reason`` (e.g. ``"token expired"``).
    """
    header, algorithm = _header(token, settings)
    # Static keys first; the JWKS (a network call on a cache miss) only if none of them fits.
    claims, refused = _try_keys(token, keys.candidates(algorithm), settings)
    if claims is None and _uses_jwks(algorithm, keys):
        claims, refused = _try_keys(token, [keys.jwks_key(header, algorithm)], settings, refused)
    return _principal(_verified(claims, refused))


async def verify_token_async(token: str, keys: KeySet, settings: AuthSettings) -> Principal:
    """:func:`verify_token` for an event loop: a JWKS fetch never blocks it.

    Static keys verify in place (microseconds of CPU); a token that needs the JWKS document
    awaits its asynchronous fetch, shared with every other request waiting on it.
    """
    principal, _ = await verify_token_claims_async(token, keys, settings)
    return principal


async def verify_token_claims_async(
    token: str, keys: KeySet, settings: AuthSettings
) -> tuple[Principal, dict[str, Any]]:
    """:func:`verify_token_async`, with the verified claims beside the principal (a cache of
    verified tokens keeps each one until its ``exp``).

    Raises:
        Unauthorized: For any failure, with ``details.reason``.
    """
    header, algorithm = _header(token, settings)
    claims, refused = _try_keys(token, keys.candidates(algorithm), settings)
    if claims is None and _uses_jwks(algorithm, keys):
        key = await keys.jwks_key_async(header, algorithm)
        claims, refused = _try_keys(token, [key], settings, refused)
    verified = _verified(claims, refused)
    return _principal(verified), verified


def _header(token: str, settings: AuthSettings) -> tuple[dict[str, Any], str]:
    """The token's unverified header and its algorithm, checked against the allow-list."""
    if not isinstance(token, str) or not token:
        raise _unauthorized("malformed token")
    if len(token) > _MAX_TOKEN_CHARS:
        raise _unauthorized("token too large")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise _unauthorized("malformed token") from exc
    algorithm = header.get("alg")
    # The header only selects among keys; whether the algorithm is acceptable is decided by
    # the allow-list here and again by each key's own list inside jwt.decode.
    if not isinstance(algorithm, str) or algorithm not in settings.algorithms:
        raise _unauthorized("algorithm not allowed")
    return header, algorithm


def _uses_jwks(algorithm: str, keys: KeySet) -> bool:
    return algorithm in ASYMMETRIC_ALGORITHMS and keys.jwks_url is not None


def _try_keys(
    token: str,
    candidates: Iterable[VerificationKey],
    settings: AuthSettings,
    refused: jwt.InvalidSignatureError | None = None,
    *,
    verify_exp: bool = True,
) -> tuple[dict[str, Any] | None, jwt.InvalidSignatureError | None]:
    """The verified claims, or ``None`` and the last signature refusal (or the one given)."""
    for key in candidates:
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=list(key.algorithms),
                audience=settings.audience,
                issuer=settings.issuer,
                leeway=settings.leeway_s,
                options={
                    "require": list(REQUIRED_CLAIMS),
                    "verify_signature": True,
                    "verify_exp": verify_exp,
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.InvalidSignatureError as exc:
            # Several keys of one type (a rotation, or a static key and a JWKS): try the next.
            refused = exc
        except jwt.PyJWTError as exc:
            raise _unauthorized(_reason(exc)) from exc
        else:
            return claims, None
    return None, refused


def _verified(
    claims: dict[str, Any] | None, refused: jwt.InvalidSignatureError | None
) -> dict[str, Any]:
    if claims is not None:
        return claims
    if refused is not None:
        raise _unauthorized("invalid signature") from refused
    raise _unauthorized("no key for algorithm")


def _principal(claims: Mapping[str, Any]) -> Principal:
    sub = claims.get("sub")
    if (
        not isinstance(sub, str)
        or not sub.strip()
        or len(sub) > _MAX_ID_CHARS
        or sub.startswith(ANONYMOUS_PREFIX)
    ):
        raise _unauthorized("invalid claim: sub")
    try:
        scopes = parse_scope_claim(claims.get("scope"))
    except ValueError:
        raise _unauthorized("invalid claim: scope") from None
    raw_tier = claims.get("tier")
    if raw_tier is None:
        tier = DEFAULT_TIER
    elif is_tier(raw_tier):
        tier = raw_tier
    else:
        raise _unauthorized("unknown tier")
    optional: dict[str, str | None] = {}
    for name in ("team", "org", "jti"):
        value = claims.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > _MAX_ID_CHARS):
            raise _unauthorized(f"invalid claim: {name}")
        optional[name] = value
    return Principal(
        user_id=sub,
        scopes=scopes,
        tier=tier,
        team=optional["team"],
        org=optional["org"],
        token_id=optional["jti"],
    )


def bearer_token(authorization: str | None) -> str | None:
    """Extract the token of an ``Authorization: Bearer ...`` header.

    Args:
        authorization: The header value, or ``None`` when absent.

    Returns:
        The token, or ``None`` when no header was sent (an anonymous caller).

    Raises:
        Unauthorized: The header is present but is not a bearer credential.
    """
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise Unauthorized(
            "the Authorization header must be 'Bearer <token>'",
            {"reason": "malformed authorization header"},
        )
    return token


def authenticate(
    authorization: str | None, client_key: str, keys: KeySet, settings: AuthSettings
) -> Principal:
    """The principal of a request: anonymous without a header, else the verified token's.

    Args:
        authorization: The ``Authorization`` header value, or ``None``.
        client_key: The client address, used for anonymous callers.
        keys: The verification keys.
        settings: The auth settings.

    Returns:
        The caller.

    Raises:
        Unauthorized: A header was sent but its token does not verify.
    """
    token = bearer_token(authorization)
    if token is None:
        return Principal.anonymous(client_key)
    return verify_token(token, keys, settings)


def expired_principal(token: str, keys: KeySet, settings: AuthSettings) -> Principal | None:
    """Who an *expired* token speaks for: every check of :func:`verify_token` but expiry.

    Only for attributing a refused request in the audit log (a 401 for an expired token is
    recorded in its org); never for access. ``None`` when any other check fails, so a forged
    token can never put a record in an org's log. Static keys only: a refusal never waits on
    a JWKS fetch.
    """
    try:
        _, algorithm = _header(token, settings)
        claims, _ = _try_keys(token, keys.candidates(algorithm), settings, verify_exp=False)
        return None if claims is None else _principal(claims)
    except (jwt.PyJWTError, Unauthorized):
        return None


async def authenticate_async(
    authorization: str | None, client_key: str, keys: KeySet, settings: AuthSettings
) -> Principal:
    """:func:`authenticate` for an event loop (see :func:`verify_token_async`)."""
    token = bearer_token(authorization)
    if token is None:
        return Principal.anonymous(client_key)
    return await verify_token_async(token, keys, settings)
