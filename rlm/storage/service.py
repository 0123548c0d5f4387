"""The storage service: byte ranges from named connectors, by any method.

Example:
    >>> service = StorageService(default_storage_settings(Path("/var/lib/rlm")))
    >>> result = service.read("local", "logs/app.log", 0, 4096)
    >>> result.method, len(result.data)
    ('mmap', 4096)
    >>> body = result.to_wire()  # {"data": <base64>, "latencyMs": ..., "method": ...}
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, get_args

import pybase64

from rlm.errors import InternalError
from rlm.models.storage import ReadMethod, StorageReadRequest
from rlm.storage.access import StorageReader, check_access
from rlm.storage.local import LocalStore
from rlm.storage.loop import EventLoopThread
from rlm.storage.ranges import validate_range
from rlm.storage.reasons import Reason, invalid
from rlm.storage.remote import RemoteStore
from rlm.storage.settings import ConnectorConfig, LocalConnector, StorageSettings
from rlm.storage.store import Store

__all__ = ["ReadResult", "StorageService", "encode_base64"]

_METHOD_NAMES = frozenset(get_args(ReadMethod))


def encode_base64(buf: bytes | bytearray | memoryview) -> str:
    """Standard base64 (with padding) of a buffer, without copying it first.

    pybase64's SIMD codec is many times faster than the standard library's, and base64
    dominates the cost of ``POST /storage/read``.

    Args:
        buf: Any contiguous buffer (a zero-copy ``mmap`` view included).

    Returns:
        The ASCII text.
    """
    # b64encode_as_string builds the str directly: encoding to bytes and then decoding
    # allocates and copies a second buffer as large as the answer.
    text: str = pybase64.b64encode_as_string(buf)
    return text


# Not frozen: a frozen dataclass sets each field through object.__setattr__, which cost a
# sixth of the whole mmap read step (issue 18). Nothing keeps or hashes one; treat it as read-only.
@dataclass(slots=True)
class ReadResult:
    """One range read from storage.

    Attributes:
        data: The bytes: a read-only zero-copy ``memoryview`` of a memory map for ``mmap``,
            otherwise ``bytes`` (or a read-only ``memoryview`` of a buffer).
        method: The method that served the read (``mmap`` falls back to ``direct`` when the
            file changed under its map).
        latency_ms: Wall time of the read itself (resolution, size check and bytes).
        size: The object's whole size when it was read.
        start: The first byte read.
        end: One past the last byte read (``end`` as asked for, clamped to ``size``).
    """

    data: memoryview | bytes
    method: ReadMethod
    latency_ms: float
    size: int
    start: int
    end: int

    def to_wire(self) -> dict[str, Any]:
        """The ``StorageReadResponse`` body as a JSON-ready dict (data in base64).

        Serialise it with ``orjson.dumps``; building the pydantic model for a 16 MiB read
        only adds a validation pass over a 22 MB string.
        """
        return {
            "data": encode_base64(self.data),
            "latencyMs": self.latency_ms,
            "method": self.method,
            "objectSize": self.size,
        }


class StorageService:
    """Reads byte ranges from the connectors named in settings.

    Stores (descriptors, memory maps, HTTP sessions) are created on a connector's first
    use and kept until :meth:`close`. The service is safe to use from many threads, but not
    from inside its own event loop.

    Args:
        settings: The connectors and limits.
        clock: Seconds for ``latencyMs`` (``time.perf_counter``).
        use_openat2: Local confinement: force ``openat2`` (``True``) or the ``O_NOFOLLOW``
            walk (``False``); ``None`` detects.
    """

    def __init__(
        self,
        settings: StorageSettings,
        *,
        clock: Callable[[], float] = time.perf_counter,
        use_openat2: bool | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._use_openat2 = use_openat2
        self._loop = EventLoopThread()
        self._lock = threading.Lock()
        self._stores: dict[str, Store] = {}
        self._closed = False

    @property
    def settings(self) -> StorageSettings:
        """The settings the service was built with."""
        return self._settings

    @property
    def connector_names(self) -> list[str]:
        """The connectors a request may name, sorted."""
        return sorted(self._settings.connectors)

    def _config(self, connector: str) -> ConnectorConfig:
        config = self._settings.connectors.get(connector)
        if config is None:
            raise invalid(
                Reason.UNKNOWN_CONNECTOR,
                f"no storage connector named {connector!r}",
                field="connector",
                connector=connector,
                connectors=self.connector_names,
            )
        return config

    def check_access(self, connector: str, key: str, reader: StorageReader | None) -> None:
        """Refuse unless ``reader`` may read ``key`` (``None``: a trusted caller, who may).

        Nothing is read: a refusal says nothing about what exists.

        Raises:
            InvalidInput: an unknown connector.
            Forbidden: the connector's access policy refuses the key (``not_permitted``).
        """
        config = self._config(connector)
        if reader is not None:
            check_access(connector, config.access, key, reader)

    def _store(self, connector: str) -> Store:
        with self._lock:
            if self._closed:
                raise InternalError("the storage service is closed")
            store = self._stores.get(connector)
            if store is not None:
                return store
            config = self._config(connector)
            s = self._settings
            if isinstance(config, LocalConnector):
                store = LocalStore(
                    connector,
                    config,
                    self._loop,
                    part_bytes=s.async_part_bytes,
                    max_concurrency=s.async_max_concurrency,
                    use_openat2=self._use_openat2,
                )
            else:
                store = RemoteStore(
                    connector,
                    config,
                    self._loop,
                    part_bytes=s.async_part_bytes,
                    max_concurrency=s.async_max_concurrency,
                    info_ttl_s=s.remote_info_ttl_s,
                    max_handles=s.remote_max_handles,
                )
            self._stores[connector] = store
            return store

    def _method(self, store: Store, connector: str, method: str) -> ReadMethod:
        if method == "auto":
            return store.default_method
        if method not in _METHOD_NAMES:
            raise invalid(
                Reason.UNSUPPORTED_METHOD,
                f"unknown read method {method!r}",
                field="method",
                methods=sorted(_METHOD_NAMES),
            )
        if method not in store.methods:
            raise invalid(
                Reason.UNSUPPORTED_METHOD,
                f"connector {connector!r} does not serve method {method!r}",
                field="method",
                methods=sorted(store.methods),
            )
        return method

    def read(
        self,
        connector: str,
        key: str,
        start: int,
        end: int,
        method: str = "auto",
        *,
        max_bytes: int | None = None,
        reader: StorageReader | None = None,
    ) -> ReadResult:
        """Read ``[start, end)`` of an object.

        Args:
            connector: A connector named in settings.
            key: The object's key, relative to the connector's root.
            start: First byte (inclusive), ``>= 0``.
            end: One past the last byte (exclusive), ``> start``; clamped to the object.
            method: ``auto`` (``mmap`` on local connectors, ``direct`` on remote ones),
                ``mmap``, ``direct``, ``async`` or ``standard``.
            max_bytes: The largest length that may be asked for; defaults to
                ``settings.max_read_bytes`` (task-input chunks pass their own).
            reader: Who reads, for the connector's access policy; ``None`` for a trusted
                caller (the engine's Python API).

        Returns:
            The bytes and how they were read; every method returns the same bytes.

        Raises:
            InvalidInput: a bad range, connector, method or key, a missing object, or a
                ``start`` at or past its end (``details["reason"]`` says which).
            Forbidden: the key would leave the connector's root, or ``reader`` may not read
                it (``not_permitted``).
        """
        # Whose key it is comes first: another tenant's key is refused whatever the range.
        self.check_access(connector, key, reader)
        limit = self._settings.max_read_bytes if max_bytes is None else max_bytes
        rng = validate_range(start, end, max_bytes=limit)
        store = self._store(connector)
        chosen = self._method(store, connector, method)
        began = self._clock()
        try:
            got = store.read(key, rng, chosen)
        except OSError as err:
            # EIO, ENOMEM from mmap and the like: the service failed, not the request.
            raise InternalError(
                f"reading from storage connector {connector!r} failed: {err}",
                {"connector": connector, "errno": err.errno},
            ) from err
        latency_ms = (self._clock() - began) * 1000.0
        return ReadResult(
            data=got.data,
            method=got.method,
            latency_ms=latency_ms,
            size=got.size,
            start=got.range.start,
            end=got.range.end,
        )

    def read_request(
        self, request: StorageReadRequest, reader: StorageReader | None = None
    ) -> ReadResult:
        """:meth:`read` for a validated ``POST /storage/read`` body, read as ``reader``.

        A range longer than ``max_read_bytes`` is served up to that length (as a range past
        the object's end is served up to its end): the answer's length and ``objectSize``
        say where to ask next.
        """
        end = min(request.end, request.start + self._settings.max_read_bytes)
        return self.read(
            request.connector,
            request.key,
            request.start,
            end,
            request.method,
            reader=reader,
        )

    def size(self, connector: str, key: str) -> int:
        """An object's size in bytes.

        Raises:
            InvalidInput: a bad connector or key, or a missing object.
            Forbidden: the key would leave the connector's root.
        """
        return self._store(connector).size(key)

    def open_input_file(self, connector: str, key: str) -> Any:
        """A random-access ``pyarrow.NativeFile`` over an object, for Arrow IPC readers.

        Local files come back as a zero-copy reader over their memory map; remote objects
        as pyarrow's S3/GCS input file (ranged GETs on demand).
        """
        return self._store(connector).open_input_file(key)

    def close(self) -> None:
        """Close every store and the event loop; later reads fail with INTERNAL_ERROR."""
        with self._lock:
            self._closed = True
            stores = list(self._stores.values())
            self._stores.clear()
        for store in stores:
            store.close()
        self._loop.close()

    def __enter__(self) -> StorageService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
