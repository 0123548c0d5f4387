"""Settings of token verification and minting (``Settings.auth``, ``RLM_AUTH__*``).

Example:
    ``RLM_AUTH__ALGORITHMS='["RS256"]' RLM_AUTH__PUBLIC_KEY_FILE=/etc/rlm/jwt.pub rlm serve``

With nothing configured the server accepts HS256 tokens signed with a secret it generates in
the state directory on first start (development only; production refuses it, see
:mod:`rlm.auth.keys`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, Literal, get_args
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from rlm.errors import InternalError

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "EC_ALGORITHMS",
    "HMAC_ALGORITHMS",
    "RSA_ALGORITHMS",
    "SUPPORTED_ALGORITHMS",
    "Algorithm",
    "AuthConfigurationError",
    "AuthSettings",
]

Algorithm = Literal["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]
"""A JWS algorithm the service accepts. ``none`` is not one, and cannot be configured."""

SUPPORTED_ALGORITHMS: Final[tuple[Algorithm, ...]] = get_args(Algorithm)
HMAC_ALGORITHMS: Final[frozenset[str]] = frozenset({"HS256", "HS384", "HS512"})
RSA_ALGORITHMS: Final[frozenset[str]] = frozenset({"RS256", "RS384", "RS512", "PS256"})
EC_ALGORITHMS: Final[frozenset[str]] = frozenset({"ES256", "ES384"})
ASYMMETRIC_ALGORITHMS: Final[frozenset[str]] = RSA_ALGORITHMS | EC_ALGORITHMS


class AuthConfigurationError(InternalError):
    """The auth settings cannot work as given (raised at startup, never for a request).

    It is an :class:`~rlm.errors.InternalError` so it shares the one error root; its message
    says which setting to change and never contains key material.
    """


class AuthSettings(BaseModel):
    """How tokens are verified and minted.

    Attributes:
        issuer: Required ``iss`` of every token; the ``iss`` of minted tokens.
        audience: Required ``aud`` of every token; the ``aud`` of minted tokens.
        algorithms: The allow-list of JWS algorithms. A token's own ``alg`` header never widens
            it, and each key is further restricted to the algorithms of its type.
        secret: HMAC secret (at least 32 bytes) for the HS algorithms.
        secret_file: File holding the HMAC secret (surrounding whitespace is stripped).
        public_key: PEM public key (RSA or EC) for the RS/PS/ES algorithms.
        public_key_file: File holding the PEM public key.
        private_key: PEM private key (RSA or EC) for minting asymmetric tokens; its public half
            also verifies.
        private_key_file: File holding the PEM private key.
        jwks_url: An http(s) JWKS endpoint of an identity provider (asymmetric keys only).
        jwks_cache_s: How long a fetched JWKS document is reused.
        jwks_refresh_cooldown_s: The least time between two fetches of the JWKS document: a
            token naming a key the cached document lacks (a key rotation) fetches it again at
            once, but never more often than this.
        leeway_s: Clock skew tolerated on ``exp``, ``nbf`` and ``iat``.
        token_cache_s: How long an API replica reuses its verification of a bearer token
            (never past the token's expiry; ``0`` verifies every request); a key withdrawn from
            the JWKS document is still accepted for at most this long.
        default_ttl_s: Lifetime of a minted token when the caller names none.
        max_ttl_s: Longest lifetime a minted token may have.
    """

    model_config = ConfigDict(frozen=True)

    issuer: str = Field(default="rlm-hypervisor", min_length=1)
    audience: str = Field(default="rlm-api", min_length=1)
    algorithms: tuple[Algorithm, ...] = Field(default=("HS256",), min_length=1)
    secret: SecretStr | None = None
    secret_file: Path | None = None
    public_key: str | None = None
    public_key_file: Path | None = None
    private_key: SecretStr | None = None
    private_key_file: Path | None = None
    jwks_url: str | None = None
    jwks_cache_s: float = Field(default=300.0, gt=0, le=86_400)
    jwks_refresh_cooldown_s: float = Field(default=10.0, ge=0, le=3600)
    leeway_s: float = Field(default=30.0, ge=0, le=600)
    token_cache_s: float = Field(default=60.0, ge=0, le=3600)
    default_ttl_s: int = Field(default=3600, gt=0)
    max_ttl_s: int = Field(default=86_400, gt=0)

    @field_validator("algorithms", mode="before")
    @classmethod
    def _refuse_none(cls, value: object) -> object:
        # Say plainly why "none" fails instead of a generic "literal_error".
        items = [value] if isinstance(value, str) else value
        if isinstance(items, list | tuple) and any(
            isinstance(item, str) and item.strip().lower() == "none" for item in items
        ):
            raise ValueError('the "none" algorithm (unsigned tokens) is never accepted')
        return items

    @field_validator("algorithms")
    @classmethod
    def _dedupe(cls, value: tuple[Algorithm, ...]) -> tuple[Algorithm, ...]:
        return tuple(dict.fromkeys(value))

    @field_validator("jwks_url")
    @classmethod
    def _http_only(cls, value: str | None) -> str | None:
        if value is not None and urlparse(value).scheme.lower() not in ("http", "https"):
            raise ValueError("jwks_url must be an http(s) URL")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> AuthSettings:
        pairs = (
            ("secret", "secret_file"),
            ("public_key", "public_key_file"),
            ("private_key", "private_key_file"),
        )
        for inline, path in pairs:
            if getattr(self, inline) is not None and getattr(self, path) is not None:
                raise ValueError(f"set {inline} or {path}, not both")
        if self.default_ttl_s > self.max_ttl_s:
            raise ValueError("default_ttl_s must not exceed max_ttl_s")
        return self

    @property
    def hmac_algorithms(self) -> tuple[str, ...]:
        """The allowed HS algorithms, in allow-list order."""
        return tuple(alg for alg in self.algorithms if alg in HMAC_ALGORITHMS)

    @property
    def asymmetric_algorithms(self) -> tuple[str, ...]:
        """The allowed RS/PS/ES algorithms, in allow-list order."""
        return tuple(alg for alg in self.algorithms if alg in ASYMMETRIC_ALGORITHMS)
