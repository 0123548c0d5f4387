"""Signing and verification keys, loaded once from :class:`~rlm.auth.settings.AuthSettings`.

Key sources, in the order they are considered:

* an HMAC secret (``secret`` / ``secret_file``) for the HS algorithms;
* a PEM public key (``public_key`` / ``public_key_file``), RSA or EC, for RS/PS/ES;
* the public half of a PEM private key (``private_key`` / ``private_key_file``);
* a JWKS endpoint (``jwks_url``), fetched lazily, asynchronously on a server, cached and
  refetched when a token names a new key (see :mod:`rlm.auth.jwks`).

Every key is bound to the allowed algorithms *of its type*: an HMAC secret verifies only HS
tokens, an RSA key only RS/PS tokens, an EC key only the ES algorithm of its curve. That makes
the classic HS/RS confusion (an HS256 token "signed" with the server's public key as the HMAC
secret) impossible even when both families are allowed.

The embedded default (HS256 allowed, no secret configured) generates a 256-bit random secret at
first start into ``<state_dir>/jwt-secret`` (see :mod:`rlm.auth.generated_secret`). In
production (``env == "production"``) a generated secret is refused altogether: every node must
share one explicitly configured secret or key pair.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import load_pem_x509_certificate

from rlm.auth.generated_secret import (
    GENERATED_SECRET_FILENAME,
    MIN_SECRET_BYTES,
    load_or_create_secret,
)
from rlm.auth.jwks import JwksCache, JwksKey, public_key_of
from rlm.auth.settings import (
    EC_ALGORITHMS,
    RSA_ALGORITHMS,
    AuthConfigurationError,
    AuthSettings,
)
from rlm.errors import Unauthorized

__all__ = [
    "KeySet",
    "SigningKey",
    "VerificationKey",
    "load_signing_key",
    "load_verification_keys",
]

_log = logging.getLogger(__name__)

# RFC 7518 §3.2: an HMAC key must be at least as long as the hash output.
_HMAC_MIN_BYTES: Final[Mapping[str, int]] = {"HS256": 32, "HS384": 48, "HS512": 64}
_EC_CURVE_ALGORITHM: Final[Mapping[str, str]] = {"secp256r1": "ES256", "secp384r1": "ES384"}
_JWKS_TIMEOUT_S: Final = 5.0

KeyKind = Literal["hmac", "rsa", "ec"]
PublicKey: TypeAlias = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
PrivateKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def _compatible_algorithms(key: bytes | PublicKey, allowed: Iterable[str]) -> tuple[str, ...]:
    """The allowed algorithms this key can verify, in allow-list order."""
    if isinstance(key, bytes):
        return tuple(
            alg for alg in allowed if alg in _HMAC_MIN_BYTES and len(key) >= _HMAC_MIN_BYTES[alg]
        )
    if isinstance(key, rsa.RSAPublicKey):
        return tuple(alg for alg in allowed if alg in RSA_ALGORITHMS)
    curve_alg = _EC_CURVE_ALGORITHM.get(key.curve.name)
    return tuple(alg for alg in allowed if alg in EC_ALGORITHMS and alg == curve_alg)


def _kind_of(key: bytes | PublicKey | PrivateKey) -> KeyKind:
    if isinstance(key, bytes):
        return "hmac"
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return "rsa"
    return "ec"


class VerificationKey:
    """One key that verifies tokens, bound to the algorithms it may verify.

    Args:
        key: An HMAC secret (bytes) or an RSA/EC public key.
        algorithms: The algorithms this key may verify (already intersected with the
            allow-list and the key's type).
        kid: The key id, if the key came from a JWKS.

    Pickles as PEM / raw bytes, so a key set can be handed to Ray actors.
    """

    __slots__ = ("algorithms", "key", "kid")

    def __init__(
        self, key: bytes | PublicKey, algorithms: Sequence[str], kid: str | None = None
    ) -> None:
        self.key = key
        self.algorithms: tuple[str, ...] = tuple(algorithms)
        self.kid = kid

    @property
    def kind(self) -> KeyKind:
        """``hmac``, ``rsa`` or ``ec``."""
        return _kind_of(self.key)

    def __reduce__(self) -> tuple[Any, ...]:
        # cryptography's key objects do not pickle; their PEM form does.
        material = self.key if isinstance(self.key, bytes) else _public_pem(self.key)
        return (_restore_verification_key, (self.kind, material, self.algorithms, self.kid))

    def __repr__(self) -> str:
        # Never show an HMAC secret, not even in a traceback.
        return (
            f"VerificationKey(kind={self.kind!r}, algorithms={self.algorithms!r}, kid={self.kid!r})"
        )


def _public_pem(key: PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _restore_verification_key(
    kind: KeyKind, material: bytes, algorithms: tuple[str, ...], kid: str | None
) -> VerificationKey:
    key: bytes | PublicKey = material if kind == "hmac" else _parse_public_key(material, "pickle")
    return VerificationKey(key, algorithms, kid)


class KeySet:
    """The keys a server verifies tokens with.

    Args:
        keys: Static keys (secret, configured public keys).
        jwks_url: An identity provider's JWKS endpoint, or ``None``.
        jwks_algorithms: The allowed asymmetric algorithms for JWKS keys.
        jwks_cache_s: How long a fetched JWKS document is reused.
        jwks_refresh_cooldown_s: The least time between two fetches of the JWKS document.
        generated_secret: Whether the HMAC secret was generated (development default).

    The JWKS cache (:class:`~rlm.auth.jwks.JwksCache`) is created on first use and keeps the
    document it fetched; it is not pickled (each process makes its own).
    """

    def __init__(
        self,
        keys: Sequence[VerificationKey],
        *,
        jwks_url: str | None = None,
        jwks_algorithms: Sequence[str] = (),
        jwks_cache_s: float = 300.0,
        jwks_refresh_cooldown_s: float = 10.0,
        generated_secret: bool = False,
    ) -> None:
        self.keys: tuple[VerificationKey, ...] = tuple(keys)
        self.jwks_url = jwks_url
        self.jwks_algorithms: tuple[str, ...] = tuple(jwks_algorithms)
        self.jwks_cache_s = jwks_cache_s
        self.jwks_refresh_cooldown_s = jwks_refresh_cooldown_s
        self.generated_secret = generated_secret
        self._jwks: JwksCache | None = None
        self._lock = threading.Lock()

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _restore_key_set,
            (
                self.keys,
                self.jwks_url,
                self.jwks_algorithms,
                self.jwks_cache_s,
                self.jwks_refresh_cooldown_s,
                self.generated_secret,
            ),
        )

    def __repr__(self) -> str:
        return f"KeySet(keys={list(self.keys)!r}, jwks_url={self.jwks_url!r})"

    def candidates(self, algorithm: str) -> list[VerificationKey]:
        """The static keys that may verify a token of ``algorithm``.

        Args:
            algorithm: The token's ``alg``, already checked against the allow-list.

        Returns:
            Keys whose own algorithm list contains ``algorithm`` (possibly none).
        """
        return [key for key in self.keys if algorithm in key.algorithms]

    @property
    def jwks(self) -> JwksCache | None:
        """The JWKS endpoint's key cache (``None`` without ``jwks_url``); made on first use,
        so a server that never sees an RS/ES token never calls out."""
        if self.jwks_url is None:
            return None
        with self._lock:
            if self._jwks is None:
                self._jwks = JwksCache(
                    self.jwks_url,
                    cache_s=self.jwks_cache_s,
                    refresh_cooldown_s=self.jwks_refresh_cooldown_s,
                    timeout_s=_JWKS_TIMEOUT_S,
                )
            return self._jwks

    def jwks_key(self, header: Mapping[str, Any], algorithm: str) -> VerificationKey:
        """Find the JWKS key for a token and bind it to the algorithms it may verify.

        Blocks on a fetch when the document must be (re)fetched: servers use
        :meth:`jwks_key_async`.

        Args:
            header: The token's unverified header (only ``kid`` is read from it).
            algorithm: The token's ``alg``, already checked against the allow-list.

        Returns:
            The matching public key.

        Raises:
            Unauthorized: No JWKS configured, the endpoint failed, no key matches, or the key
                cannot verify ``algorithm``.
        """
        cache = self.jwks
        if cache is None:
            raise _unauthorized("no key for algorithm")
        return self._bind(cache.key_sync(header), algorithm)

    async def jwks_key_async(self, header: Mapping[str, Any], algorithm: str) -> VerificationKey:
        """:meth:`jwks_key` without blocking the event loop (the fetch is asynchronous)."""
        cache = self.jwks
        if cache is None:
            raise _unauthorized("no key for algorithm")
        return self._bind(await cache.key(header), algorithm)

    def _bind(self, found: JwksKey, algorithm: str) -> VerificationKey:
        raw = public_key_of(found)
        allowed = _compatible_algorithms(raw, self.jwks_algorithms)
        if found.alg is not None:  # a JWK may pin its algorithm
            allowed = tuple(alg for alg in allowed if alg == found.alg)
        if algorithm not in allowed:
            raise _unauthorized("algorithm does not match the signing key")
        return VerificationKey(raw, allowed, found.kid)


def _restore_key_set(
    keys: tuple[VerificationKey, ...],
    jwks_url: str | None,
    jwks_algorithms: tuple[str, ...],
    jwks_cache_s: float,
    jwks_refresh_cooldown_s: float,
    generated_secret: bool,
) -> KeySet:
    return KeySet(
        keys,
        jwks_url=jwks_url,
        jwks_algorithms=jwks_algorithms,
        jwks_cache_s=jwks_cache_s,
        jwks_refresh_cooldown_s=jwks_refresh_cooldown_s,
        generated_secret=generated_secret,
    )


class SigningKey:
    """The key a server mints tokens with.

    Args:
        key: An HMAC secret (bytes) or an RSA/EC private key.
        algorithm: The algorithm tokens are signed with.
        kid: Key id put into the token header, if any.
        generated: Whether the secret is the generated development secret.
    """

    __slots__ = ("algorithm", "generated", "key", "kid")

    def __init__(
        self,
        key: bytes | PrivateKey,
        algorithm: str,
        kid: str | None = None,
        *,
        generated: bool = False,
    ) -> None:
        self.key = key
        self.algorithm = algorithm
        self.kid = kid
        self.generated = generated

    def __reduce__(self) -> tuple[Any, ...]:
        if isinstance(self.key, bytes):
            material = self.key
        else:
            material = self.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        return (_restore_signing_key, (material, self.algorithm, self.kid, self.generated))

    def __repr__(self) -> str:
        return f"SigningKey(algorithm={self.algorithm!r}, kid={self.kid!r})"


def _restore_signing_key(
    material: bytes, algorithm: str, kid: str | None, generated: bool
) -> SigningKey:
    key: bytes | PrivateKey = (
        material if algorithm.startswith("HS") else _parse_private_key(material, "pickle")
    )
    return SigningKey(key, algorithm, kid, generated=generated)


def _unauthorized(reason: str) -> Unauthorized:
    return Unauthorized(f"invalid token: {reason}", {"reason": reason})


# -- loading ---------------------------------------------------------------------------------


def load_verification_keys(auth: AuthSettings, state_dir: Path, env: str) -> KeySet:
    """Build the key set a server verifies tokens with.

    Args:
        auth: The auth settings.
        state_dir: Where the generated development secret lives.
        env: ``production`` refuses a generated secret.

    Returns:
        The keys, each bound to the allowed algorithms of its type.

    Raises:
        AuthConfigurationError: The settings cannot verify any allowed algorithm, a key is
            unreadable or unusable, a key is configured that no allowed algorithm can use, or
            production would run on a generated secret.
    """
    keys: list[VerificationKey] = []
    generated = False
    hs_algs = auth.hmac_algorithms
    asym_algs = auth.asymmetric_algorithms

    if hs_algs:
        secret, generated = _resolve_secret(auth, state_dir, env)
        usable = _compatible_algorithms(secret, hs_algs)
        if not usable:
            raise AuthConfigurationError(
                f"the HMAC secret is {len(secret)} bytes, too short for {', '.join(hs_algs)} "
                "(RFC 7518: at least the hash size)"
            )
        keys.append(VerificationKey(secret, usable))
    elif auth.secret is not None or auth.secret_file is not None:
        raise AuthConfigurationError(
            "an HMAC secret is configured but no HS algorithm is allowed in auth.algorithms"
        )

    public_keys: list[tuple[str, PublicKey]] = []
    if auth.public_key is not None:
        public_keys.append(
            ("public_key", _parse_public_key(auth.public_key.encode(), "public_key"))
        )
    if auth.public_key_file is not None:
        pem = _read_file(auth.public_key_file, "public_key_file")
        public_keys.append(("public_key_file", _parse_public_key(pem, "public_key_file")))
    private = _configured_private_key(auth)
    if private is not None:
        public_keys.append(("private_key", private.public_key()))

    if (public_keys or auth.jwks_url) and not asym_algs:
        raise AuthConfigurationError(
            "a public key or JWKS is configured but auth.algorithms allows only HS algorithms"
        )
    for source, public in public_keys:
        usable = _compatible_algorithms(public, asym_algs)
        if not usable:
            raise AuthConfigurationError(
                f"the {_kind_of(public).upper()} key of {source} fits none of the allowed "
                f"algorithms {', '.join(asym_algs)}"
            )
        keys.append(VerificationKey(public, usable))
    if asym_algs and not public_keys and auth.jwks_url is None:
        raise AuthConfigurationError(
            f"{', '.join(asym_algs)} allowed but no public_key, public_key_file, private_key "
            "or jwks_url is configured"
        )
    return KeySet(
        keys,
        jwks_url=auth.jwks_url,
        jwks_algorithms=asym_algs,
        jwks_cache_s=auth.jwks_cache_s,
        jwks_refresh_cooldown_s=auth.jwks_refresh_cooldown_s,
        generated_secret=generated,
    )


def load_signing_key(auth: AuthSettings, state_dir: Path, env: str) -> SigningKey:
    """Build the key a server mints tokens with.

    A configured private key wins; otherwise the HMAC secret (configured, or generated outside
    production). The algorithm is the first allowed one the key can sign.

    Args:
        auth: The auth settings.
        state_dir: Where the generated development secret lives.
        env: ``production`` refuses a generated secret.

    Returns:
        The signing key and its algorithm.

    Raises:
        AuthConfigurationError: No allowed algorithm fits the available key, or production
            would mint with a generated secret.
    """
    private = _configured_private_key(auth)
    if private is not None:
        usable = _compatible_algorithms(private.public_key(), auth.asymmetric_algorithms)
        if not usable:
            raise AuthConfigurationError(
                f"the {_kind_of(private).upper()} private key fits none of the allowed "
                f"algorithms {', '.join(auth.algorithms)}"
            )
        return SigningKey(private, usable[0])
    if not auth.hmac_algorithms:
        raise AuthConfigurationError(
            "cannot mint tokens: asymmetric algorithms need private_key or private_key_file"
        )
    secret, generated = _resolve_secret(auth, state_dir, env)
    usable = _compatible_algorithms(secret, auth.hmac_algorithms)
    if not usable:
        raise AuthConfigurationError(
            f"the HMAC secret is {len(secret)} bytes, too short for "
            f"{', '.join(auth.hmac_algorithms)}"
        )
    return SigningKey(secret, usable[0], generated=generated)


def _resolve_secret(auth: AuthSettings, state_dir: Path, env: str) -> tuple[bytes, bool]:
    """The HMAC secret and whether it was generated."""
    if auth.secret is not None:
        secret = auth.secret.get_secret_value().encode()
        source = "auth.secret"
    elif auth.secret_file is not None:
        secret = _read_file(auth.secret_file, "secret_file").strip()
        source = "auth.secret_file"
    else:
        if env == "production":
            raise AuthConfigurationError(
                "production refuses a generated JWT secret: set RLM_AUTH__SECRET or "
                "RLM_AUTH__SECRET_FILE (shared by every node), or use asymmetric keys"
            )
        return load_or_create_secret(state_dir / GENERATED_SECRET_FILENAME), True
    if len(secret) < MIN_SECRET_BYTES:
        raise AuthConfigurationError(
            f"{source} is {len(secret)} bytes; an HMAC secret needs at least "
            f"{MIN_SECRET_BYTES} random bytes"
        )
    return secret, False


def _configured_private_key(auth: AuthSettings) -> PrivateKey | None:
    if auth.private_key is not None:
        return _parse_private_key(auth.private_key.get_secret_value().encode(), "private_key")
    if auth.private_key_file is not None:
        pem = _read_file(auth.private_key_file, "private_key_file")
        return _parse_private_key(pem, "private_key_file")
    return None


def _read_file(path: Path, setting: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise AuthConfigurationError(
            f"cannot read auth.{setting} {str(path)!r}: {exc.strerror}"
        ) from None


def _parse_public_key(pem: bytes, setting: str) -> PublicKey:
    try:
        if b"-----BEGIN CERTIFICATE-----" in pem:
            key: object = load_pem_x509_certificate(pem).public_key()
        else:
            key = serialization.load_pem_public_key(pem)
    except ValueError:
        raise AuthConfigurationError(
            f"auth.{setting} is not a PEM public key or certificate"
        ) from None
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise AuthConfigurationError(f"auth.{setting} must be an RSA or EC key")
    return key


def _parse_private_key(pem: bytes, setting: str) -> PrivateKey:
    try:
        key: object = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        # The exception text may quote key bytes; say only what is wrong.
        raise AuthConfigurationError(
            f"auth.{setting} is not an unencrypted PEM private key"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise AuthConfigurationError(f"auth.{setting} must be an RSA or EC key")
    return key
