"""Storage settings: the named connectors and the limits of a read.

A connector is a name (``local``, ``s3``, ``gcs``, or any other) bound to a root: a local
directory or a bucket (and prefix). Keys in requests are relative to that root.

Example:
    ``RLM_STORAGE__CONNECTORS__S3__KIND=s3 RLM_STORAGE__CONNECTORS__S3__BUCKET=corpus``
    once :class:`StorageSettings` is wired into :class:`rlm.config.Settings` as ``storage``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from rlm.storage.access import AccessPolicy

__all__ = [
    "DEFAULT_MAX_READ_BYTES",
    "AccessPolicy",
    "ConnectorConfig",
    "GcsConnector",
    "LocalConnector",
    "S3Connector",
    "StorageSettings",
    "default_storage_settings",
    "with_local_default",
]

DEFAULT_MAX_READ_BYTES = 16 * 1024 * 1024
"""The largest range one ``POST /storage/read`` may ask for (16 MiB)."""


def _emulator_host() -> str | None:
    # Google's own clients switch to the emulator, anonymously, when this variable is set.
    host = os.environ.get("STORAGE_EMULATOR_HOST", "").strip()
    if not host or host == "default":
        return None
    return host if "://" in host else f"http://{host}"


class _Connector(BaseModel):
    """What every connector has: the access policy of tenants' reads.

    Attributes:
        access: What tenants may read (see :mod:`rlm.storage.access`); nothing by default.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    access: AccessPolicy = Field(default_factory=AccessPolicy)


class LocalConnector(_Connector):
    """A directory on the local disk; keys resolve strictly beneath it.

    Attributes:
        kind: ``local``, ``s3`` or ``gcs`` (each kind takes the fields listed after it).
        root: The directory served.
        create_root: Create ``root`` on first use when it does not exist.
        max_open_files: Descriptors kept open (least recently used ones are closed).
        max_maps: Memory maps kept (least recently used ones are dropped).
        revalidate_s: How long a cached descriptor is trusted to still be the file at its
            key; after that the key is resolved again, so a replaced file is seen.
        follow_symlinks: Follow symbolic links that stay beneath the root. Off by default: a
            link under one tenant's prefix could lead into another's.
    """

    kind: Literal["local"] = "local"
    root: Path
    create_root: bool = False
    follow_symlinks: bool = False
    max_open_files: int = Field(default=128, ge=1, le=65_536)
    max_maps: int = Field(default=64, ge=1, le=65_536)
    revalidate_s: float = Field(default=1.0, ge=0)


class S3Connector(_Connector):
    """An S3 (or S3-compatible) bucket.

    Credentials come from the usual AWS environment (variables, profile, instance role).

    Attributes:
        bucket: The bucket.
        prefix: A key prefix every request key is put under.
        endpoint_url: E.g. ``http://127.0.0.1:9000`` for MinIO or moto; ``None`` for AWS.
        region: The bucket's region; ``None`` lets the AWS environment decide.
        anonymous: Send unsigned requests (public buckets).
        timeout_s: Connect and request timeout of one call.
    """

    kind: Literal["s3"] = "s3"
    bucket: Annotated[str, Field(min_length=1)]
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None
    anonymous: bool = False
    timeout_s: float = Field(default=30.0, gt=0)


class GcsConnector(_Connector):
    """A Google Cloud Storage bucket.

    ``STORAGE_EMULATOR_HOST`` is honoured as Google's clients do: when it is set, the
    endpoint defaults to it and requests are anonymous.

    Attributes:
        bucket: The bucket.
        prefix: A key prefix every request key is put under.
        project: The billing project.
        endpoint_url: E.g. ``http://127.0.0.1:4443`` for an emulator; ``None`` for Google.
        anonymous: Send unauthenticated requests.
        timeout_s: Request timeout (and retry budget) of one call.
    """

    kind: Literal["gcs"] = "gcs"
    bucket: Annotated[str, Field(min_length=1)]
    prefix: str = ""
    project: str | None = None
    endpoint_url: str | None = Field(default_factory=_emulator_host)
    anonymous: bool = Field(default_factory=lambda: _emulator_host() is not None)
    timeout_s: float = Field(default=30.0, gt=0)


ConnectorConfig = Annotated[
    LocalConnector | S3Connector | GcsConnector, Field(discriminator="kind")
]
"""One connector's settings, told apart by ``kind``."""


class StorageSettings(BaseModel):
    """Every storage setting.

    Attributes:
        connectors: Connectors by name (the ``connector`` field of a request).
        max_read_bytes: The most bytes one ``POST /storage/read`` answers (a longer range is
            served up to this length).
        async_part_bytes: Ranges larger than this are split into parts fetched concurrently
            by the ``async`` method.
        async_max_concurrency: Parts of one ``async`` read in flight at once.
        remote_info_ttl_s: How long an object's size (one HEAD) is trusted.
        remote_max_handles: Remote objects whose size and open handle are kept.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    connectors: dict[
        Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")],
        ConnectorConfig,
    ] = Field(default_factory=dict)
    max_read_bytes: int = Field(default=DEFAULT_MAX_READ_BYTES, ge=1, le=1 << 31)
    async_part_bytes: int = Field(default=4 * 1024 * 1024, ge=4096)
    async_max_concurrency: int = Field(default=8, ge=1, le=256)
    remote_info_ttl_s: float = Field(default=5.0, ge=0)
    remote_max_handles: int = Field(default=256, ge=1, le=65_536)


def with_local_default(storage: StorageSettings, state_dir: Path) -> StorageSettings:
    """Add the ``local`` connector at ``<state_dir>/data`` unless one is configured.

    Settings from the environment replace a default ``connectors`` dict whole (defining
    ``RLM_STORAGE__CONNECTORS__S3__...`` drops a default ``local``), and the default cannot
    know ``state_dir``; call this once both are read.

    Args:
        storage: The storage settings as read.
        state_dir: ``RLM_STATE_DIR``.

    Returns:
        ``storage`` itself when it names a ``local`` connector, else a copy with one that
        creates its root on first use, where each user reads ``users/<user>/``, each org's
        members ``orgs/<org>/`` and everyone ``public/``.
    """
    if "local" in storage.connectors:
        return storage
    local = LocalConnector(
        root=Path(state_dir) / "data", create_root=True, access=AccessPolicy.tenant_default()
    )
    return storage.model_copy(update={"connectors": {"local": local, **storage.connectors}})


def default_storage_settings(state_dir: Path) -> StorageSettings:
    """The embedded defaults: one ``local`` connector serving ``<state_dir>/data``, tenants
    each under their own prefix (see :func:`with_local_default`).

    Args:
        state_dir: ``RLM_STATE_DIR``.

    Returns:
        Settings whose ``local`` connector creates its root on first use.
    """
    return with_local_default(StorageSettings(), state_dir)
