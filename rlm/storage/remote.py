"""The remote connectors: S3 and Google Cloud Storage.

Methods:

* ``direct`` (``auto``): one ranged GET through pyarrow's ``S3FileSystem`` /
  ``GcsFileSystem``. The input file (opened with one HEAD, which gives the size) is cached
  for ``remote_info_ttl_s``, so a read within that time is exactly one GET.
* ``standard``: fsspec's ``cat_file`` (s3fs / gcsfs).
* ``async``: fsspec's ``_cat_file`` coroutine on the service's one event loop; a range
  larger than ``async_part_bytes`` is split into parts fetched concurrently.

fsspec's backends disagree at the edges (s3fs sends ``bytes=5-4`` for an empty range and
gets the whole object back), so every range is clamped to the object's size, from a HEAD
cached briefly, before a backend sees it, and an empty range never reaches one. The
fsspec file systems are bound to the service's event loop, so their sessions are closed
on that loop by :meth:`RemoteStore.close`.
"""

from __future__ import annotations

import asyncio
import datetime
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import urlsplit

from rlm.errors import InternalError, RLMError
from rlm.models.storage import ReadMethod
from rlm.storage.keys import remote_object_path
from rlm.storage.loop import EventLoopThread
from rlm.storage.ranges import ByteRange, clamp_range, split_range
from rlm.storage.reasons import Reason, forbidden, invalid
from rlm.storage.settings import GcsConnector, S3Connector
from rlm.storage.store import StoreRead

__all__ = ["RemoteStore"]

# How pyarrow (AWS SDK), s3fs and gcsfs word an HTTP 416 (the object shrank under a cached
# size); matched case-insensitively.
_RANGE_REFUSED = ("invalidrange", "http status 416", "status code: 416", "not satisfiable")


@dataclass(slots=True)
class _Opened:
    """A pyarrow input file and the size its HEAD reported."""

    file: Any
    size: int
    at: float


class RemoteStore:
    """Byte ranges of objects in an S3 or GCS bucket.

    Args:
        name: The connector's name (for messages).
        config: The connector's settings.
        loop: The shared event loop (fsspec's sessions live on it).
        part_bytes: Part size of an ``async`` read.
        max_concurrency: Parts of one ``async`` read in flight.
        info_ttl_s: How long an object's size is trusted.
        max_handles: Objects whose size (and pyarrow input file) are kept.
        clock: Monotonic seconds.
    """

    methods: frozenset[ReadMethod] = frozenset({"direct", "async", "standard"})
    default_method: ReadMethod = "direct"

    def __init__(
        self,
        name: str,
        config: S3Connector | GcsConnector,
        loop: EventLoopThread,
        *,
        part_bytes: int = 4 * 1024 * 1024,
        max_concurrency: int = 8,
        info_ttl_s: float = 5.0,
        max_handles: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._config = config
        self._loop = loop
        self._part_bytes = part_bytes
        self._max_concurrency = max_concurrency
        self._ttl = info_ttl_s
        self._max_handles = max_handles
        self._clock = clock
        self._lock = threading.Lock()
        self._arrow: Any = None
        self._fsspec: Any = None
        self._opened: OrderedDict[str, _Opened] = OrderedDict()
        self._sizes: OrderedDict[str, tuple[int, float]] = OrderedDict()

    # -- backends ----------------------------------------------------------------------

    def _endpoint(self) -> tuple[str, str] | None:
        url = self._config.endpoint_url
        if not url:
            return None
        parts = urlsplit(url if "://" in url else f"http://{url}")
        return parts.scheme or "https", parts.netloc + parts.path.rstrip("/")

    def _arrow_fs(self) -> Any:
        with self._lock:
            if self._arrow is None:
                import pyarrow.fs as pafs

                cfg = self._config
                kw: dict[str, Any] = {"anonymous": cfg.anonymous}
                endpoint = self._endpoint()
                if endpoint is not None:
                    kw["scheme"], kw["endpoint_override"] = endpoint
                if isinstance(cfg, S3Connector):
                    kw["connect_timeout"] = kw["request_timeout"] = cfg.timeout_s
                    if cfg.region:
                        kw["region"] = cfg.region
                    self._arrow = pafs.S3FileSystem(**kw)
                else:
                    kw["retry_time_limit"] = datetime.timedelta(seconds=cfg.timeout_s)
                    if cfg.project:
                        kw["project_id"] = cfg.project
                    self._arrow = pafs.GcsFileSystem(**kw)
            return self._arrow

    def _fsspec_fs(self) -> Any:
        loop = self._loop.loop
        with self._lock:
            if self._fsspec is None:
                cfg = self._config
                if isinstance(cfg, S3Connector):
                    import s3fs

                    client_kwargs: dict[str, Any] = {}
                    if cfg.region:
                        client_kwargs["region_name"] = cfg.region
                    self._fsspec = s3fs.S3FileSystem(
                        anon=cfg.anonymous,
                        endpoint_url=cfg.endpoint_url,
                        client_kwargs=client_kwargs,
                        config_kwargs={
                            "connect_timeout": cfg.timeout_s,
                            "read_timeout": cfg.timeout_s,
                        },
                        loop=loop,
                        skip_instance_cache=True,
                    )
                else:
                    # gcsfs.GCSFileSystem may be the "extended" class that first asks a gRPC
                    # control API for the bucket's layout (a minute of retries against an
                    # emulator); the core class speaks the plain JSON API only.
                    from gcsfs.core import GCSFileSystem

                    kw: dict[str, Any] = {}
                    if cfg.project:
                        kw["project"] = cfg.project
                    self._fsspec = GCSFileSystem(
                        token="anon" if cfg.anonymous else None,
                        endpoint_url=cfg.endpoint_url,
                        requests_timeout=cfg.timeout_s,
                        loop=loop,
                        skip_instance_cache=True,
                        **kw,
                    )
            return self._fsspec

    # -- sizes -------------------------------------------------------------------------

    def _fresh(self, at: float) -> bool:
        return self._clock() - at < self._ttl

    def _forget(self, path: str) -> None:
        with self._lock:
            self._opened.pop(path, None)
            self._sizes.pop(path, None)

    def _opened_file(self, path: str, key: str) -> _Opened:
        with self._lock:
            found = self._opened.get(path)
            if found is not None and self._fresh(found.at):
                self._opened.move_to_end(path)
                return found
        fs = self._arrow_fs()
        try:
            file = fs.open_input_file(path)
            size = int(file.size())
        except Exception as err:
            self._forget(path)
            self._raise(err, path, key)
        opened = _Opened(file, size, self._clock())
        with self._lock:
            self._opened[path] = opened
            self._sizes[path] = (size, opened.at)
            self._trim()
        return opened

    def _fsspec_size(self, path: str, key: str) -> int:
        with self._lock:
            found = self._sizes.get(path)
            if found is not None and self._fresh(found[1]):
                return found[0]
        fs = self._fsspec_fs()
        try:
            info = self._loop.run(fs._info(path), timeout=self._timeout())
        except Exception as err:
            self._forget(path)
            self._raise(err, path, key)
        if info.get("type") != "file":
            raise invalid(Reason.MISSING_KEY, f"no object at key {key!r}", field="key", key=key)
        size = int(info["size"])
        with self._lock:
            self._sizes[path] = (size, self._clock())
            self._trim()
        return size

    def _trim(self) -> None:
        while len(self._opened) > self._max_handles:
            self._opened.popitem(last=False)
        while len(self._sizes) > self._max_handles:
            self._sizes.popitem(last=False)

    def _timeout(self) -> float:
        # A guard around the backend's own timeouts, so a wedged call cannot block forever.
        return self._config.timeout_s * 4

    def _raise(self, err: BaseException, path: str, key: str) -> NoReturn:
        if isinstance(err, RLMError):
            raise err
        if isinstance(err, FileNotFoundError):
            raise invalid(
                Reason.MISSING_KEY, f"no object at key {key!r}", field="key", key=key
            ) from None
        if isinstance(err, PermissionError):
            raise forbidden(
                Reason.PERMISSION_DENIED, "the object may not be read", key=key
            ) from None
        text = str(err)
        if any(marker in text.lower() for marker in _RANGE_REFUSED):
            # The object shrank since its size was cached.
            self._forget(path)
            raise invalid(
                Reason.START_PAST_EOF,
                "the range starts past the end of the object",
                field="start",
                key=key,
            ) from None
        if isinstance(err, TimeoutError):
            raise InternalError(f"storage connector {self.name!r} timed out") from None
        raise InternalError(
            f"storage connector {self.name!r} failed: {type(err).__name__}: {text[:500]}",
            {"connector": self.name},
        ) from None

    # -- reads -------------------------------------------------------------------------

    def size(self, key: str) -> int:
        """The object's size in bytes (one HEAD, then cached briefly).

        Raises:
            Forbidden: an absolute key or a ``..`` segment.
            InvalidInput: no object at the key.
        """
        path = remote_object_path(self._config.bucket, self._config.prefix, key)
        return self._opened_file(path, key).size

    def read(self, key: str, rng: ByteRange, method: ReadMethod) -> StoreRead:
        """Read a validated range, clamped to the object.

        Args:
            key: The key beneath the bucket and prefix.
            rng: The range as asked for.
            method: ``direct``, ``async`` or ``standard``.

        Raises:
            Forbidden: an absolute key or a ``..`` segment.
            InvalidInput: no object at the key, or ``start`` past its end.
        """
        path = remote_object_path(self._config.bucket, self._config.prefix, key)
        data: bytes
        if method == "direct":
            opened = self._opened_file(path, key)
            size = opened.size
            clamped = clamp_range(rng, size)
            try:
                data = opened.file.read_at(clamped.length, clamped.start)
            except Exception as err:
                self._forget(path)
                self._raise(err, path, key)
        else:
            size = self._fsspec_size(path, key)
            clamped = clamp_range(rng, size)
            fs = self._fsspec_fs()
            try:
                if method == "standard":
                    data = fs.cat_file(path, start=clamped.start, end=clamped.end)
                else:
                    data = self._loop.run(self._cat_parts(fs, path, clamped), self._timeout())
            except Exception as err:
                self._forget(path)
                self._raise(err, path, key)
        if len(data) != clamped.length:
            self._forget(path)  # The object changed since its size was cached.
            if not data:  # Some servers answer a range past the end with no bytes, not 416.
                raise invalid(
                    Reason.START_PAST_EOF,
                    "the range starts past the end of the object",
                    field="start",
                    key=key,
                )
        return StoreRead(data, method, ByteRange(clamped.start, clamped.start + len(data)), size)

    async def _cat_parts(self, fs: Any, path: str, rng: ByteRange) -> bytes:
        parts = split_range(rng, self._part_bytes)
        gate = asyncio.Semaphore(self._max_concurrency)

        async def _one(part: ByteRange) -> bytes:
            async with gate:
                chunk: bytes = await fs._cat_file(path, start=part.start, end=part.end)
                return chunk

        chunks = await asyncio.gather(*(_one(p) for p in parts))
        kept: list[bytes] = []
        for part, chunk in zip(parts, chunks, strict=True):
            kept.append(chunk)
            if len(chunk) < part.length:  # The object shrank; what follows is not contiguous.
                break
        return kept[0] if len(kept) == 1 else b"".join(kept)

    def open_input_file(self, key: str) -> Any:
        """A random-access pyarrow file over the object (ranged GETs on demand)."""
        path = remote_object_path(self._config.bucket, self._config.prefix, key)
        return self._opened_file(path, key).file

    def close(self) -> None:
        """Close fsspec's HTTP sessions on their loop and forget cached files."""
        with self._lock:
            fs, self._fsspec = self._fsspec, None
            self._arrow = None
            self._opened.clear()
            self._sizes.clear()
        if fs is None or not self._loop.started:
            return
        try:
            creator = getattr(fs, "_s3creator", None)  # s3fs's aiobotocore client context
            if creator is not None:
                self._loop.run(creator.__aexit__(None, None, None), timeout=5)
            session = getattr(fs, "_session", None)  # gcsfs's aiohttp session
            if session is not None and not session.closed:
                self._loop.run(session.close(), timeout=5)
        except Exception:
            pass  # Best effort at shutdown: there is no caller left to tell.
