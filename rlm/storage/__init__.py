"""Byte ranges from storage: local files (zero-copy memory maps), S3 and GCS.

The pure core of ``POST /storage/read`` and of storage-backed task inputs; no Ray here.

Example:
    >>> from rlm.storage import StorageService, default_storage_settings
    >>> with StorageService(default_storage_settings(state_dir)) as storage:
    ...     result = storage.read("local", "numbers.i64", 0, 1 << 20)
    ...     body = result.to_wire()
"""

from __future__ import annotations

from rlm.models.storage import SourceFormat, SourceSpec
from rlm.storage.access import AccessPolicy, StorageReader, check_access, readable_prefixes
from rlm.storage.inputs import SourceChunk, read_source_chunk, split_source
from rlm.storage.ranges import ByteRange, clamp_range, validate_range
from rlm.storage.reasons import Reason
from rlm.storage.service import ReadResult, StorageService, encode_base64
from rlm.storage.settings import (
    DEFAULT_MAX_READ_BYTES,
    ConnectorConfig,
    GcsConnector,
    LocalConnector,
    S3Connector,
    StorageSettings,
    default_storage_settings,
    with_local_default,
)

__all__ = [
    "DEFAULT_MAX_READ_BYTES",
    "AccessPolicy",
    "ByteRange",
    "ConnectorConfig",
    "GcsConnector",
    "LocalConnector",
    "ReadResult",
    "Reason",
    "S3Connector",
    "SourceChunk",
    "SourceFormat",
    "SourceSpec",
    "StorageReader",
    "StorageService",
    "StorageSettings",
    "check_access",
    "clamp_range",
    "default_storage_settings",
    "encode_base64",
    "read_source_chunk",
    "readable_prefixes",
    "split_source",
    "validate_range",
    "with_local_default",
]
