"""Token minting and verification with real keys (HS256, RS256, ES256, JWKS over HTTP)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import pickle
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from pydantic import SecretStr

from rlm.auth import (
    SCOPE_EXECUTE,
    SCOPE_QUOTA_READ,
    SCOPE_READ,
    AuthSettings,
    KeySet,
    Principal,
    authenticate,
    bearer_token,
    issue_token,
    load_signing_key,
    load_verification_keys,
    verify_token,
)
from rlm.errors import Forbidden, InvalidInput, Unauthorized

ISS = "rlm-hypervisor"
AUD = "rlm-api"


# -- keys and helpers ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def private_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(obj: dict[str, Any]) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISS,
        "aud": AUD,
        "sub": "alice",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": "t-1",
        "scope": "rlm:execute rlm:read",
        "tier": "power_user",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def reason_of(excinfo: pytest.ExceptionInfo[Unauthorized]) -> str:
    return str(excinfo.value.details["reason"])


@pytest.fixture
def hs_secret() -> str:
    return secrets.token_urlsafe(32)


@pytest.fixture
def hs_settings(hs_secret: str) -> AuthSettings:
    return AuthSettings(secret=SecretStr(hs_secret))


@pytest.fixture
def hs_keys(hs_settings: AuthSettings, tmp_path: Path) -> KeySet:
    return load_verification_keys(hs_settings, tmp_path, "development")


@pytest.fixture
def rs_settings(rsa_key: rsa.RSAPrivateKey) -> AuthSettings:
    return AuthSettings(algorithms=("RS256",), public_key=public_pem(rsa_key))


@pytest.fixture
def rs_keys(rs_settings: AuthSettings, tmp_path: Path) -> KeySet:
    return load_verification_keys(rs_settings, tmp_path, "development")


# -- positives -------------------------------------------------------------------------------


def test_hs256_round_trip(hs_settings: AuthSettings, hs_keys: KeySet, tmp_path: Path) -> None:
    signing = load_signing_key(hs_settings, tmp_path, "development")
    assert signing.algorithm == "HS256"
    token = issue_token(
        "alice",
        [SCOPE_EXECUTE, SCOPE_READ],
        "power_user",
        team="t1",
        org="o1",
        settings=hs_settings,
        key=signing,
    )
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    principal = verify_token(token, hs_keys, hs_settings)
    assert principal.user_id == "alice"
    assert principal.scopes == frozenset({SCOPE_EXECUTE, SCOPE_READ})
    assert principal.tier == "power_user"
    assert (principal.team, principal.org) == ("t1", "o1")
    assert principal.token_id
    assert not principal.is_anonymous


def test_issued_claims(hs_settings: AuthSettings, hs_secret: str, tmp_path: Path) -> None:
    signing = load_signing_key(hs_settings, tmp_path, "development")
    token = issue_token(
        "bob", [SCOPE_READ], "user", ttl_s=120, settings=hs_settings, key=signing, now=1_000
    )
    payload = jwt.decode(
        token,
        hs_secret.encode(),
        algorithms=["HS256"],
        audience=AUD,
        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
    )
    assert payload["iss"] == ISS
    assert payload["aud"] == AUD
    assert (payload["iat"], payload["nbf"], payload["exp"]) == (1_000, 1_000, 1_120)
    assert payload["scope"] == "rlm:read"
    assert payload["tier"] == "user"
    assert "team" not in payload
    assert len(payload["jti"]) == 32


def test_rs256_with_private_key_setting(rsa_key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    settings = AuthSettings(algorithms=("RS256",), private_key=SecretStr(private_pem(rsa_key)))
    signing = load_signing_key(settings, tmp_path, "development")
    assert signing.algorithm == "RS256"
    keys = load_verification_keys(settings, tmp_path, "development")
    token = issue_token("alice", [SCOPE_READ], "admin", settings=settings, key=signing)
    principal = verify_token(token, keys, settings)
    assert principal.tier == "admin"
    # The SDK's verifier with just the public key accepts it too.
    verify_token(
        token, load_verification_keys(_public_only(settings, rsa_key), tmp_path, "x"), settings
    )


def _public_only(settings: AuthSettings, key: rsa.RSAPrivateKey) -> AuthSettings:
    return AuthSettings(algorithms=settings.algorithms, public_key=public_pem(key))


def test_rs256_token_from_external_issuer(
    rsa_key: rsa.RSAPrivateKey, rs_settings: AuthSettings, rs_keys: KeySet
) -> None:
    token = jwt.encode(claims(), rsa_key, algorithm="RS256")
    assert verify_token(token, rs_keys, rs_settings).user_id == "alice"


def test_es256(ec_key: ec.EllipticCurvePrivateKey, tmp_path: Path) -> None:
    settings = AuthSettings(algorithms=("ES256",), private_key=SecretStr(private_pem(ec_key)))
    signing = load_signing_key(settings, tmp_path, "development")
    assert signing.algorithm == "ES256"
    keys = load_verification_keys(settings, tmp_path, "development")
    token = issue_token("carol", [SCOPE_EXECUTE], "enterprise", settings=settings, key=signing)
    assert verify_token(token, keys, settings).tier == "enterprise"
    external = jwt.encode(claims(), ec_key, algorithm="ES256")
    assert verify_token(external, keys, settings).user_id == "alice"


def test_ps256(rsa_key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    settings = AuthSettings(algorithms=("PS256",), public_key=public_pem(rsa_key))
    keys = load_verification_keys(settings, tmp_path, "development")
    token = jwt.encode(claims(), rsa_key, algorithm="PS256")
    assert verify_token(token, keys, settings).user_id == "alice"


def test_missing_tier_defaults_to_user(
    rsa_key: rsa.RSAPrivateKey, rs_settings: AuthSettings, rs_keys: KeySet
) -> None:
    token = jwt.encode(claims(tier=None), rsa_key, algorithm="RS256")
    assert verify_token(token, rs_keys, rs_settings).tier == "user"


def test_unknown_scopes_are_ignored_and_implied_added(
    rsa_key: rsa.RSAPrivateKey, rs_settings: AuthSettings, rs_keys: KeySet
) -> None:
    token = jwt.encode(claims(scope="openid profile rlm:quota:manage"), rsa_key, algorithm="RS256")
    principal = verify_token(token, rs_keys, rs_settings)
    assert principal.scopes == frozenset({"rlm:quota:manage", SCOPE_QUOTA_READ})


def test_leeway_tolerates_small_skew(
    rsa_key: rsa.RSAPrivateKey, rs_settings: AuthSettings, rs_keys: KeySet
) -> None:
    now = int(time.time())
    token = jwt.encode(claims(exp=now - 5, nbf=now + 5, iat=now), rsa_key, algorithm="RS256")
    assert verify_token(token, rs_keys, rs_settings).user_id == "alice"


def test_key_rotation_tries_every_key_of_the_type(
    rsa_key: rsa.RSAPrivateKey, other_rsa_key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    settings = AuthSettings(
        algorithms=("RS256",),
        public_key=public_pem(other_rsa_key),
        private_key=SecretStr(private_pem(rsa_key)),
    )
    keys = load_verification_keys(settings, tmp_path, "development")
    for key in (rsa_key, other_rsa_key):
        assert verify_token(jwt.encode(claims(), key, algorithm="RS256"), keys, settings)


# -- negatives -------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", ""])
def test_alg_none_refused(alg: str, hs_settings: AuthSettings, hs_keys: KeySet) -> None:
    token = f"{segment({'alg': alg, 'typ': 'JWT'})}.{segment(claims())}."
    with pytest.raises(Unauthorized) as excinfo:
        verify_token(token, hs_keys, hs_settings)
    assert reason_of(excinfo) == "algorithm not allowed"


def test_alg_none_refused_even_with_a_signature(
    hs_settings: AuthSettings, hs_keys: KeySet, hs_secret: str
) -> None:
    signing_input = f"{segment({'alg': 'none'})}.{segment(claims())}"
    sig = hmac.new(hs_secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    with pytest.raises(Unauthorized):
        verify_token(f"{signing_input}.{b64url(sig)}", hs_keys, hs_settings)


def _hs256_with_public_key_as_secret(key: rsa.RSAPrivateKey) -> str:
    signing_input = f"{segment({'alg': 'HS256', 'typ': 'JWT'})}.{segment(claims(tier='admin'))}"
    sig = hmac.new(public_pem(key).encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(sig)}"


def test_hs_rs_confusion_refused_when_server_uses_rs256(
    rsa_key: rsa.RSAPrivateKey, rs_settings: AuthSettings, rs_keys: KeySet
) -> None:
    token = _hs256_with_public_key_as_secret(rsa_key)
    with pytest.raises(Unauthorized) as excinfo:
        verify_token(token, rs_keys, rs_settings)
    assert reason_of(excinfo) == "algorithm not allowed"


def test_hs_rs_confusion_refused_when_both_families_allowed(
    rsa_key: rsa.RSAPrivateKey, hs_secret: str, tmp_path: Path
) -> None:
    settings = AuthSettings(
        algorithms=("HS256", "RS256"), secret=SecretStr(hs_secret), public_key=public_pem(rsa_key)
    )
    keys = load_verification_keys(settings, tmp_path, "development")
    # The RSA key is bound to RS256 only: it never serves as an HMAC secret.
    assert [key.algorithms for key in keys.keys] == [("HS256",), ("RS256",)]
    with pytest.raises(Unauthorized) as excinfo:
        verify_token(_hs256_with_public_key_as_secret(rsa_key), keys, settings)
    assert reason_of(excinfo) == "invalid signature"
    # Both families still work with their own keys.
    assert verify_token(jwt.encode(claims(), rsa_key, algorithm="RS256"), keys, settings)
    assert verify_token(jwt.encode(claims(), hs_secret.encode(), algorithm="HS256"), keys, settings)


def test_rs_token_refused_by_hs_only_server(
    rsa_key: rsa.RSAPrivateKey, hs_settings: AuthSettings, hs_keys: KeySet
) -> None:
    token = jwt.encode(claims(), rsa_key, algorithm="RS256")
    with pytest.raises(Unauthorized) as excinfo:
        verify_token(token, hs_keys, hs_settings)
    assert reason_of(excinfo) == "algorithm not allowed"


def test_allowed_alg_without_a_key_of_its_type(rsa_key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    # ES256 is allowed but only an RSA key is configured: no key may verify an ES256 token.
    settings = AuthSettings(algorithms=("RS256", "ES256"), public_key=public_pem(rsa_key))
    keys = load_verification_keys(settings, tmp_path, "development")
    ec_token = jwt.encode(claims(), ec.generate_private_key(ec.SECP256R1()), algorithm="ES256")
    with pytest.raises(Unauthorized) as excinfo:
        verify_token(ec_token, keys, settings)
    assert reason_of(excinfo) == "no key for algorithm"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"exp": int(time.time()) - 3600}, "token expired"),
        ({"nbf": int(time.time()) + 3600}, "token not yet valid"),
        ({"iat": int(time.time()) + 3600}, "token not yet valid"),
        ({"aud": "someone-else"}, "wrong audience"),
        ({"iss": "evil"}, "wrong issuer"),
        ({"exp": None}, "missing claim: exp"),
        ({"sub": None}, "missing claim: sub"),
        ({"iss": None}, "missing claim: iss"),
        ({"aud": None}, "missing claim: aud"),
        ({"tier": "god_mode"}, "unknown tier"),
        ({"tier": 3}, "unknown tier"),
        ({"sub": ""}, "invalid claim: sub"),
        ({"sub": "anonymous:10.0.0.1"}, "invalid claim: sub"),
        ({"scope": {"rlm:admin": True}}, "invalid claim: scope"),
        ({"team": 7}, "invalid claim: team"),
    ],
)
def test_claim_negatives(
    overrides: dict[str, Any],
    reason: str,
    rsa_key: rsa.RSAPrivateKey,
    rs_settings: AuthSettings,
    rs_keys: KeySet,
) -> None:
    token = jwt.encode(claims(**overrides), rsa_key, algorithm="RS256")
    with pytest.raises(Unauthorized) as excinfo:
        verify_token(token, rs_keys, rs_settings)
    assert reason_of(excinfo) == reason
    assert token not in str(excinfo.value)
    assert token not in repr(excinfo.value.to_payload())


def test_tampered_payload_refused(
    rsa_key: rsa.RSAPrivateKey, rs_settings: AuthSettings, rs_keys: KeySet
) -> None:
    header, _, signature = jwt.encode(claims(), rsa_key, algorithm="RS256").split(".")
    forged = f"{header}.{segment(claims(tier='enterprise'))}.{signature}"
    with pytest.raises(Unauthorized) as excinfo:
        verify_token(forged, rs_keys, rs_settings)
    assert reason_of(excinfo) == "invalid signature"


def test_tampered_signature_refused(
    hs_settings: AuthSettings, hs_keys: KeySet, hs_secret: str
) -> None:
    token = jwt.encode(claims(), hs_secret.encode(), algorithm="HS256")
    head, body, sig = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
    raw[5] ^= 0x01
    with pytest.raises(Unauthorized) as excinfo:
        verify_token(f"{head}.{body}.{b64url(bytes(raw))}", hs_keys, hs_settings)
    assert reason_of(excinfo) == "invalid signature"


def test_signed_by_another_key_refused(
    other_rsa_key: rsa.RSAPrivateKey, rs_settings: AuthSettings, rs_keys: KeySet
) -> None:
    token = jwt.encode(claims(), other_rsa_key, algorithm="RS256")
    with pytest.raises(Unauthorized) as excinfo:
        verify_token(token, rs_keys, rs_settings)
    assert reason_of(excinfo) == "invalid signature"


def test_wrong_hs_secret_refused(hs_settings: AuthSettings, hs_keys: KeySet) -> None:
    token = jwt.encode(claims(), secrets.token_bytes(32), algorithm="HS256")
    with pytest.raises(Unauthorized):
        verify_token(token, hs_keys, hs_settings)


@pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c", "x" * 10_000, "Ünï.cödé.x"])
def test_malformed_tokens_refused(token: str, hs_settings: AuthSettings, hs_keys: KeySet) -> None:
    with pytest.raises(Unauthorized) as excinfo:
        verify_token(token, hs_keys, hs_settings)
    assert reason_of(excinfo) in {"malformed token", "token too large"}


def test_hs_algorithm_outside_allow_list_refused(
    hs_settings: AuthSettings, hs_keys: KeySet
) -> None:
    long_secret = secrets.token_bytes(64)
    token = jwt.encode(claims(), long_secret, algorithm="HS512")
    with pytest.raises(Unauthorized) as excinfo:
        verify_token(token, hs_keys, hs_settings)
    assert reason_of(excinfo) == "algorithm not allowed"


# -- minting validation ----------------------------------------------------------------------


def test_issue_token_validates_inputs(hs_settings: AuthSettings, tmp_path: Path) -> None:
    signing = load_signing_key(hs_settings, tmp_path, "development")
    with pytest.raises(InvalidInput):
        issue_token("a", ["rlm:everything"], "user", settings=hs_settings, key=signing)
    with pytest.raises(InvalidInput):
        issue_token("a", [SCOPE_READ], "platinum", settings=hs_settings, key=signing)
    with pytest.raises(InvalidInput):
        issue_token("", [SCOPE_READ], "user", settings=hs_settings, key=signing)
    with pytest.raises(InvalidInput):
        issue_token("anonymous:1.2.3.4", [SCOPE_READ], "user", settings=hs_settings, key=signing)
    with pytest.raises(InvalidInput):
        issue_token("a", [SCOPE_READ], "user", ttl_s=0, settings=hs_settings, key=signing)
    with pytest.raises(InvalidInput):
        issue_token(
            "a",
            [SCOPE_READ],
            "user",
            ttl_s=hs_settings.max_ttl_s + 1,
            settings=hs_settings,
            key=signing,
        )


def test_minted_token_expires(hs_settings: AuthSettings, hs_keys: KeySet, tmp_path: Path) -> None:
    signing = load_signing_key(hs_settings, tmp_path, "development")
    token = issue_token(
        "a",
        [SCOPE_READ],
        "user",
        ttl_s=60,
        settings=hs_settings,
        key=signing,
        now=time.time() - 3600,
    )
    with pytest.raises(Unauthorized) as excinfo:
        verify_token(token, hs_keys, hs_settings)
    assert reason_of(excinfo) == "token expired"


# -- the Authorization header and the principal ---------------------------------------------


def test_bearer_token_parsing() -> None:
    assert bearer_token(None) is None
    assert bearer_token("Bearer abc.def.ghi") == "abc.def.ghi"
    assert bearer_token("bearer   abc") == "abc"
    for bad in ("", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer a b", "abc"):
        with pytest.raises(Unauthorized):
            bearer_token(bad)


def test_authenticate_anonymous_and_token(
    hs_settings: AuthSettings, hs_keys: KeySet, tmp_path: Path
) -> None:
    anon = authenticate(None, "10.0.0.7", hs_keys, hs_settings)
    assert anon == Principal.anonymous("10.0.0.7")
    assert anon.tier == "anonymous"
    assert anon.rate_limit_key == "anonymous:10.0.0.7"
    with pytest.raises(Unauthorized) as excinfo:
        anon.require_scope(SCOPE_READ)
    assert excinfo.value.details == {"requiredScope": SCOPE_READ}

    signing = load_signing_key(hs_settings, tmp_path, "development")
    token = issue_token("alice", [SCOPE_READ], "user", settings=hs_settings, key=signing)
    principal = authenticate(f"Bearer {token}", "10.0.0.7", hs_keys, hs_settings)
    principal.require_scope(SCOPE_READ)
    with pytest.raises(Forbidden) as forbidden:
        principal.require_scope(SCOPE_EXECUTE)
    assert forbidden.value.status == 403
    assert forbidden.value.details == {"requiredScope": SCOPE_EXECUTE}
    assert principal.rate_limit_key == "alice"
    with pytest.raises(Unauthorized):
        authenticate("Bearer not-a-token", "10.0.0.7", hs_keys, hs_settings)


def test_principal_pickles(hs_settings: AuthSettings, hs_keys: KeySet, tmp_path: Path) -> None:
    signing = load_signing_key(hs_settings, tmp_path, "development")
    token = issue_token("alice", [SCOPE_READ], "user", team="t", settings=hs_settings, key=signing)
    principal = verify_token(token, hs_keys, hs_settings)
    assert pickle.loads(pickle.dumps(principal)) == principal


def test_key_sets_pickle_for_actors(
    rsa_key: rsa.RSAPrivateKey, hs_secret: str, tmp_path: Path
) -> None:
    settings = AuthSettings(
        algorithms=("HS256", "RS256"),
        secret=SecretStr(hs_secret),
        private_key=SecretStr(private_pem(rsa_key)),
    )
    keys = pickle.loads(pickle.dumps(load_verification_keys(settings, tmp_path, "development")))
    signing = pickle.loads(pickle.dumps(load_signing_key(settings, tmp_path, "development")))
    token = issue_token("alice", [SCOPE_READ], "user", settings=settings, key=signing)
    assert verify_token(token, keys, settings).user_id == "alice"
    hs_token = jwt.encode(claims(), hs_secret.encode(), algorithm="HS256")
    assert verify_token(hs_token, keys, settings).user_id == "alice"
    assert hs_secret not in repr(keys)
    assert hs_secret not in repr(
        load_signing_key(AuthSettings(secret=SecretStr(hs_secret)), tmp_path, "development")
    )


# -- JWKS over a real local HTTP server ------------------------------------------------------


class _JWKSServer:
    def __init__(self, document: dict[str, Any] | bytes) -> None:
        self.document = document
        self.hits = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits += 1
                doc = server.document
                body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/.well-known/jwks.json"
        # A short poll interval keeps shutdown() (and so each test) fast.
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def __enter__(self) -> _JWKSServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def _jwk(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, kid: str, alg: str) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "alg": alg, "use": "sig"}


@pytest.fixture
def jwks_server(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey, monkeypatch: pytest.MonkeyPatch
) -> Iterator[_JWKSServer]:
    # urllib honours proxy variables; a local test server must be reached directly.
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    document = {"keys": [_jwk(rsa_key, "rsa-1", "RS256"), _jwk(ec_key, "ec-1", "ES256")]}
    with _JWKSServer(document) as server:
        yield server


def test_jwks_verifies_and_caches(
    jwks_server: _JWKSServer,
    rsa_key: rsa.RSAPrivateKey,
    ec_key: ec.EllipticCurvePrivateKey,
    tmp_path: Path,
) -> None:
    settings = AuthSettings(algorithms=("RS256", "ES256"), jwks_url=jwks_server.url)
    keys = load_verification_keys(settings, tmp_path, "production")
    assert jwks_server.hits == 0  # lazily: nothing fetched before the first token
    rs_token = jwt.encode(
        claims(sub="rsa-user"), rsa_key, algorithm="RS256", headers={"kid": "rsa-1"}
    )
    es_token = jwt.encode(claims(sub="ec-user"), ec_key, algorithm="ES256", headers={"kid": "ec-1"})
    assert verify_token(rs_token, keys, settings).user_id == "rsa-user"
    assert verify_token(es_token, keys, settings).user_id == "ec-user"
    assert verify_token(rs_token, keys, settings).user_id == "rsa-user"
    assert jwks_server.hits == 1


def test_jwks_negatives(
    jwks_server: _JWKSServer,
    rsa_key: rsa.RSAPrivateKey,
    other_rsa_key: rsa.RSAPrivateKey,
    ec_key: ec.EllipticCurvePrivateKey,
    tmp_path: Path,
) -> None:
    settings = AuthSettings(algorithms=("RS256", "ES256"), jwks_url=jwks_server.url)
    keys = load_verification_keys(settings, tmp_path, "development")

    def reason(token: str) -> str:
        with pytest.raises(Unauthorized) as excinfo:
            verify_token(token, keys, settings)
        return reason_of(excinfo)

    forged = jwt.encode(claims(), other_rsa_key, algorithm="RS256", headers={"kid": "rsa-1"})
    assert reason(forged) == "invalid signature"
    # A token that names the EC key but claims RS256: the key is bound to ES256.
    mismatched = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "ec-1"})
    assert reason(mismatched) == "algorithm does not match the signing key"
    no_kid = jwt.encode(claims(), rsa_key, algorithm="RS256")
    assert reason(no_kid) == "token names no key id"
    # HS256 with the public key as secret: HS256 is not even allowed here.
    assert reason(_hs256_with_public_key_as_secret(rsa_key)) == "algorithm not allowed"
    # An unknown kid is refused (pyjwt refetches at most once per cooldown period).
    unknown = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "nope"})
    assert reason(unknown) == "unknown signing key"


def test_jwks_endpoint_down(rsa_key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = AuthSettings(algorithms=("RS256",), jwks_url=f"http://127.0.0.1:{port}/jwks")
    keys = load_verification_keys(settings, tmp_path, "development")
    token = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "rsa-1"})
    with pytest.raises(Unauthorized) as excinfo:
        verify_token(token, keys, settings)
    assert reason_of(excinfo) == "signing keys unavailable"


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (b"<html>not json</html>", "signing keys unavailable"),
        (b"[1, 2, 3]", "unknown signing key"),
        (b'{"keys": []}', "unknown signing key"),
    ],
)
def test_jwks_endpoint_serving_garbage(
    document: bytes,
    reason: str,
    rsa_key: rsa.RSAPrivateKey,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    with _JWKSServer(document) as server:
        settings = AuthSettings(algorithms=("RS256",), jwks_url=server.url)
        keys = load_verification_keys(settings, tmp_path, "development")
        token = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "rsa-1"})
        with pytest.raises(Unauthorized) as excinfo:
            verify_token(token, keys, settings)
        assert reason_of(excinfo) == reason


def test_jwks_symmetric_key_refused(
    rsa_key: rsa.RSAPrivateKey, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A JWKS that publishes an "oct" (HMAC) key must not turn into an HMAC verifier.
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    secret = secrets.token_bytes(32)
    document = {"keys": [{"kty": "oct", "k": b64url(secret), "kid": "hs", "alg": "HS256"}]}
    with _JWKSServer(document) as server:
        settings = AuthSettings(algorithms=("RS256",), jwks_url=server.url)
        keys = load_verification_keys(settings, tmp_path, "development")
        token = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "hs"})
        with pytest.raises(Unauthorized) as excinfo:
            verify_token(token, keys, settings)
        assert reason_of(excinfo) == "unsupported signing key"
