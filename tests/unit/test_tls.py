"""TLS settings without Ray: the pair checked, production refusing plain HTTP, the proxy
callback raising uvicorn's floor to TLS 1.3, and the SDK's CA-file option."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import uvicorn.config
from pydantic import ValidationError

from rlm.config import ServerSettings, Settings
from rlm.errors import InvalidInput
from rlm_hypervisor.client import tls_verification
from serve_app import tls
from tests.tls_support import self_signed


def test_the_pair_is_given_together_and_must_load(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    with pytest.raises(ValidationError):
        ServerSettings(tls_cert=cert)
    good = ServerSettings(tls_cert=cert, tls_key=key, port=8443)
    assert good.scheme == "https" and ServerSettings().scheme == "http"
    options = tls.http_options(good)
    assert (options["ssl_certfile"], options["ssl_keyfile"], options["port"]) == (
        str(cert),
        str(key),
        8443,
    )
    assert "ssl_certfile" not in tls.http_options(ServerSettings())
    (tmp_path / "other").mkdir()
    other, _ = self_signed(tmp_path / "other")
    with pytest.raises(InvalidInput, match="cannot be loaded together"):
        tls.http_options(ServerSettings(tls_cert=other, tls_key=key))


def test_production_needs_tls_or_a_proxy_in_front(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    with pytest.raises(InvalidInput, match="BEHIND_TLS_PROXY"):
        tls.require_transport(Settings(env="production", state_dir=tmp_path))
    tls.require_transport(Settings(env="production", server=ServerSettings(behind_tls_proxy=True)))
    tls.require_transport(
        Settings(env="production", server=ServerSettings(tls_cert=cert, tls_key=key))
    )
    tls.require_transport(Settings(state_dir=tmp_path))  # development: plain HTTP is fine


def test_the_proxy_callback_is_set_only_with_tls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = self_signed(tmp_path)
    assert tls.controller_options(ServerSettings()) is None
    with_tls = ServerSettings(tls_cert=cert, tls_key=key)
    env_vars = tls.controller_options(with_tls)["runtime_env"]["env_vars"]  # type: ignore[index]
    assert env_vars == {"RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH": tls.PROXY_CALLBACK}
    monkeypatch.setenv("RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH", "elsewhere:callback")
    with pytest.raises(InvalidInput):
        tls.controller_options(with_tls)


def test_the_callback_raises_uvicorns_floor_to_tls_1_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = self_signed(tmp_path)
    monkeypatch.setattr(uvicorn.config, "create_ssl_context", uvicorn.config.create_ssl_context)
    assert tls.harden_proxy() == [] and tls.harden_proxy() == []  # idempotent
    config = uvicorn.config.Config(app=None, ssl_certfile=str(cert), ssl_keyfile=str(key))
    config.load()
    assert config.ssl is not None
    assert config.ssl.minimum_version == ssl.TLSVersion.TLSv1_3


def test_the_sdk_trusts_a_ca_file(tmp_path: Path) -> None:
    cert, _ = self_signed(tmp_path)
    context = tls_verification(str(cert))
    assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_REQUIRED
    assert tls_verification(False) is False
    with pytest.raises(FileNotFoundError):
        tls_verification(tmp_path / "missing.pem")
