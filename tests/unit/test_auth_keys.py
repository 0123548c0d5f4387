"""Key loading: the generated development secret, production refusals, configuration errors."""

from __future__ import annotations

import logging
import os
import stat
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import SecretStr, ValidationError

from rlm.auth import (
    GENERATED_SECRET_FILENAME,
    SCOPE_READ,
    AuthConfigurationError,
    AuthSettings,
    issue_token,
    load_signing_key,
    load_verification_keys,
    verify_token,
)
from rlm.errors import InternalError

DEV = "development"
PROD = "production"


@pytest.fixture(scope="module")
def ec384_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- the generated secret --------------------------------------------------------------------


def test_generated_secret_is_0600_and_stable(tmp_path: Path) -> None:
    state = tmp_path / "state"
    settings = AuthSettings()
    first = load_verification_keys(settings, state, DEV)
    secret_file = state / GENERATED_SECRET_FILENAME
    assert secret_file.is_file()
    assert _mode(secret_file) == 0o600
    assert first.generated_secret
    content = secret_file.read_bytes()
    assert len(content.strip()) >= 43  # 256 bits, base64url
    second = load_verification_keys(settings, state, DEV)
    assert secret_file.read_bytes() == content
    assert first.keys[0].key == second.keys[0].key == content.strip()
    # No temporary files are left behind.
    assert sorted(p.name for p in state.iterdir()) == [GENERATED_SECRET_FILENAME]


def test_generated_secret_signs_and_verifies_across_loads(tmp_path: Path) -> None:
    settings = AuthSettings()
    signing = load_signing_key(settings, tmp_path, DEV)
    assert signing.generated
    token = issue_token("alice", [SCOPE_READ], "user", settings=settings, key=signing)
    keys = load_verification_keys(settings, tmp_path, DEV)
    assert verify_token(token, keys, settings).user_id == "alice"


def test_generated_secret_ignores_umask(tmp_path: Path) -> None:
    old = os.umask(0o000)
    try:
        load_verification_keys(AuthSettings(), tmp_path, DEV)
    finally:
        os.umask(old)
    assert _mode(tmp_path / GENERATED_SECRET_FILENAME) == 0o600


def test_concurrent_first_start_agrees_on_one_secret(tmp_path: Path) -> None:
    results: list[bytes] = []
    errors: list[BaseException] = []

    def load() -> None:
        try:
            key = load_verification_keys(AuthSettings(), tmp_path, DEV).keys[0].key
            assert isinstance(key, bytes)
            results.append(key)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(set(results)) == 1


def test_secret_is_never_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="rlm.auth"):
        keys = load_verification_keys(AuthSettings(), tmp_path, DEV)
    key = keys.keys[0].key
    assert isinstance(key, bytes)
    secret = key.decode()
    assert "generated a new JWT secret" in caplog.text
    assert secret not in caplog.text
    assert secret not in repr(keys)


def test_group_readable_secret_is_refused(tmp_path: Path) -> None:
    load_verification_keys(AuthSettings(), tmp_path, DEV)
    secret_file = tmp_path / GENERATED_SECRET_FILENAME
    secret_file.chmod(0o644)
    with pytest.raises(AuthConfigurationError, match="may have leaked"):
        load_verification_keys(AuthSettings(), tmp_path, DEV)
    # Refused, not repaired: the mode is left for the operator to see.
    assert _mode(secret_file) == 0o644


def test_symlinked_secret_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("x" * 64)
    target.chmod(0o600)
    (tmp_path / GENERATED_SECRET_FILENAME).symlink_to(target)
    with pytest.raises(AuthConfigurationError, match="symlink"):
        load_verification_keys(AuthSettings(), tmp_path, DEV)


def test_truncated_secret_file_is_refused(tmp_path: Path) -> None:
    secret_file = tmp_path / GENERATED_SECRET_FILENAME
    secret_file.write_text("short\n")
    secret_file.chmod(0o600)
    with pytest.raises(AuthConfigurationError, match="shorter than"):
        load_verification_keys(AuthSettings(), tmp_path, DEV)


def test_production_refuses_a_generated_secret(tmp_path: Path) -> None:
    with pytest.raises(AuthConfigurationError, match="production refuses") as excinfo:
        load_verification_keys(AuthSettings(), tmp_path, PROD)
    assert isinstance(excinfo.value, InternalError)
    with pytest.raises(AuthConfigurationError, match="production refuses"):
        load_signing_key(AuthSettings(), tmp_path, PROD)
    assert not (tmp_path / GENERATED_SECRET_FILENAME).exists()


def test_production_refuses_a_previously_generated_secret(tmp_path: Path) -> None:
    load_verification_keys(AuthSettings(), tmp_path, DEV)
    with pytest.raises(AuthConfigurationError, match="production refuses"):
        load_verification_keys(AuthSettings(), tmp_path, PROD)


def test_production_accepts_a_configured_secret(tmp_path: Path) -> None:
    settings = AuthSettings(secret=SecretStr("s" * 32))
    keys = load_verification_keys(settings, tmp_path, PROD)
    assert not keys.generated_secret
    assert not (tmp_path / GENERATED_SECRET_FILENAME).exists()


def test_secret_file_setting(tmp_path: Path) -> None:
    secret_file = tmp_path / "mounted-secret"
    secret_file.write_text("k" * 40 + "\n")
    settings = AuthSettings(secret_file=secret_file)
    keys = load_verification_keys(settings, tmp_path, PROD)
    assert keys.keys[0].key == b"k" * 40
    signing = load_signing_key(settings, tmp_path, PROD)
    token = issue_token("alice", [SCOPE_READ], "user", settings=settings, key=signing)
    assert verify_token(token, keys, settings).user_id == "alice"


# -- configuration errors --------------------------------------------------------------------


def test_short_secret_refused(tmp_path: Path) -> None:
    with pytest.raises(AuthConfigurationError, match="at least 32"):
        load_verification_keys(AuthSettings(secret=SecretStr("too-short")), tmp_path, DEV)


def test_secret_too_short_for_hs512_only(tmp_path: Path) -> None:
    settings = AuthSettings(algorithms=("HS512",), secret=SecretStr("s" * 40))
    with pytest.raises(AuthConfigurationError, match="too short"):
        load_verification_keys(settings, tmp_path, DEV)


def test_hmac_algorithms_bound_to_key_length(tmp_path: Path) -> None:
    settings = AuthSettings(algorithms=("HS512", "HS256"), secret=SecretStr("s" * 40))
    keys = load_verification_keys(settings, tmp_path, DEV)
    assert keys.keys[0].algorithms == ("HS256",)
    assert load_signing_key(settings, tmp_path, DEV).algorithm == "HS256"


def test_missing_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(AuthConfigurationError, match="secret_file"):
        load_verification_keys(AuthSettings(secret_file=tmp_path / "nope"), tmp_path, DEV)
    settings = AuthSettings(algorithms=("RS256",), public_key_file=tmp_path / "nope.pem")
    with pytest.raises(AuthConfigurationError, match="public_key_file"):
        load_verification_keys(settings, tmp_path, DEV)


def test_asymmetric_without_key_refused(tmp_path: Path) -> None:
    with pytest.raises(AuthConfigurationError, match="no public_key"):
        load_verification_keys(AuthSettings(algorithms=("RS256",)), tmp_path, DEV)
    with pytest.raises(AuthConfigurationError, match="private_key"):
        load_signing_key(AuthSettings(algorithms=("RS256",)), tmp_path, DEV)


def test_key_without_matching_algorithm_refused(
    tmp_path: Path, ec384_key: ec.EllipticCurvePrivateKey, rsa_key: rsa.RSAPrivateKey
) -> None:
    # A P-384 key cannot verify ES256; an RSA key cannot verify ES algorithms.
    for key in (ec384_key, rsa_key):
        settings = AuthSettings(algorithms=("ES256",), public_key=_public_pem(key))
        with pytest.raises(AuthConfigurationError, match="fits none"):
            load_verification_keys(settings, tmp_path, DEV)
    es384 = AuthSettings(algorithms=("ES384",), public_key=_public_pem(ec384_key))
    assert load_verification_keys(es384, tmp_path, DEV).keys[0].algorithms == ("ES384",)


def test_public_key_with_hs_only_refused(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    settings = AuthSettings(secret=SecretStr("s" * 32), public_key=_public_pem(rsa_key))
    with pytest.raises(AuthConfigurationError, match="only HS"):
        load_verification_keys(settings, tmp_path, DEV)


def test_secret_with_asymmetric_only_refused(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    settings = AuthSettings(
        algorithms=("RS256",), secret=SecretStr("s" * 32), public_key=_public_pem(rsa_key)
    )
    with pytest.raises(AuthConfigurationError, match="no HS algorithm"):
        load_verification_keys(settings, tmp_path, DEV)


def test_garbage_pem_refused_without_echo(tmp_path: Path) -> None:
    garbage = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1ieXRlcw==\n-----END PRIVATE KEY-----\n"
    settings = AuthSettings(algorithms=("RS256",), private_key=SecretStr(garbage))
    with pytest.raises(AuthConfigurationError) as excinfo:
        load_signing_key(settings, tmp_path, DEV)
    assert "c2VjcmV0" not in str(excinfo.value)
    with pytest.raises(AuthConfigurationError, match="not a PEM public key"):
        load_verification_keys(
            AuthSettings(algorithms=("RS256",), public_key="not a key"), tmp_path, DEV
        )


# -- settings validation ---------------------------------------------------------------------


@pytest.mark.parametrize("algorithms", [["none"], ["HS256", "None"], "none"])
def test_settings_refuse_none(algorithms: object) -> None:
    with pytest.raises(ValidationError, match="never accepted"):
        AuthSettings.model_validate({"algorithms": algorithms})


@pytest.mark.parametrize("algorithms", [["HS1"], ["EdDSA"], ["ES512"], []])
def test_settings_refuse_unsupported_algorithms(algorithms: list[str]) -> None:
    with pytest.raises(ValidationError):
        AuthSettings.model_validate({"algorithms": algorithms})


def test_settings_defaults_and_validation(tmp_path: Path) -> None:
    settings = AuthSettings()
    assert settings.issuer == "rlm-hypervisor"
    assert settings.audience == "rlm-api"
    assert settings.algorithms == ("HS256",)
    assert settings.leeway_s == 30
    assert settings.default_ttl_s == 3600
    assert AuthSettings.model_validate({"algorithms": ["RS256", "RS256"]}).algorithms == ("RS256",)
    with pytest.raises(ValidationError, match="not both"):
        AuthSettings(secret=SecretStr("s" * 32), secret_file=tmp_path / "s")
    with pytest.raises(ValidationError, match="default_ttl_s"):
        AuthSettings(default_ttl_s=7200, max_ttl_s=3600)
    with pytest.raises(ValidationError, match="http"):
        AuthSettings(algorithms=("RS256",), jwks_url="file:///etc/passwd")
    assert "s" * 32 not in repr(AuthSettings(secret=SecretStr("s" * 32)))
