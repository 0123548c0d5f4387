"""Storage settings: connector variants, defaults and the emulator variable."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from rlm.storage import (
    DEFAULT_MAX_READ_BYTES,
    ConnectorConfig,
    GcsConnector,
    LocalConnector,
    S3Connector,
    StorageSettings,
    default_storage_settings,
    with_local_default,
)


def test_defaults_serve_the_state_dirs_data_folder(tmp_path: Path) -> None:
    settings = default_storage_settings(tmp_path)
    assert list(settings.connectors) == ["local"]
    local = settings.connectors["local"]
    assert isinstance(local, LocalConnector)
    assert local.root == tmp_path / "data"
    assert local.create_root
    assert settings.max_read_bytes == DEFAULT_MAX_READ_BYTES == 16 * 1024 * 1024
    assert not (tmp_path / "data").exists()  # Nothing is touched until first use.


def test_connectors_are_told_apart_by_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    settings = StorageSettings.model_validate(
        {
            "connectors": {
                "local": {"kind": "local", "root": "/srv/data"},
                "s3": {"kind": "s3", "bucket": "b", "endpoint_url": "http://127.0.0.1:9000"},
                "gcs": {"kind": "gcs", "bucket": "g", "project": "p"},
                "archive": {"kind": "s3", "bucket": "cold", "prefix": "2024/", "anonymous": True},
            },
            "max_read_bytes": 1024,
        }
    )
    assert isinstance(settings.connectors["s3"], S3Connector)
    assert isinstance(settings.connectors["archive"], S3Connector)
    gcs = settings.connectors["gcs"]
    assert isinstance(gcs, GcsConnector)
    assert gcs.endpoint_url is None
    assert not gcs.anonymous


def test_storage_emulator_host_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:4443")
    gcs = TypeAdapter(ConnectorConfig).validate_python({"kind": "gcs", "bucket": "g"})
    assert isinstance(gcs, GcsConnector)
    assert gcs.endpoint_url == "http://127.0.0.1:4443"
    assert gcs.anonymous
    explicit = GcsConnector(bucket="g", endpoint_url="https://storage.example", anonymous=False)
    assert explicit.endpoint_url == "https://storage.example"


@pytest.mark.parametrize(
    "bad",
    [
        {"connectors": {"x": {"kind": "ftp", "root": "/"}}},
        {"connectors": {"x": {"kind": "s3"}}},
        {"connectors": {"bad name": {"kind": "local", "root": "/"}}},
        {"connectors": {"x": {"kind": "local", "root": "/", "extra": 1}}},
        {"max_read_bytes": 0},
    ],
)
def test_invalid_settings_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        StorageSettings.model_validate(bad)


def test_with_local_default_adds_local_only_when_missing(tmp_path: Path) -> None:
    from_env = StorageSettings.model_validate(
        {"connectors": {"s3": {"kind": "s3", "bucket": "corpus"}}, "max_read_bytes": 1024}
    )
    merged = with_local_default(from_env, tmp_path)
    assert sorted(merged.connectors) == ["local", "s3"]
    local = merged.connectors["local"]
    assert isinstance(local, LocalConnector)
    assert local.root == tmp_path / "data"
    assert merged.max_read_bytes == 1024
    own = StorageSettings.model_validate(
        {"connectors": {"local": {"kind": "local", "root": "/srv/corpus"}}}
    )
    assert with_local_default(own, tmp_path) is own
