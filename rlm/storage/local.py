"""The local connector: confined descriptors, cached memory maps, zero-copy slices.

Methods:

* ``mmap`` (``auto``): a read-only map of the whole file, cached and keyed by
  ``(st_dev, st_ino, st_size, st_mtime_ns)``; a read is an ``fstat`` plus a slice of the map
  (no copy). When ``fstat`` shows the file changed since this key's last read, the stale map
  is dropped and that read is served by ``direct``; the next read maps the file anew.
* ``direct``: ``os.pread`` on a cached, confined descriptor (one copy, no seek).
* ``async``: ``pread`` of the range's parts on the shared event loop's thread pool, in
  parallel, into one buffer.
* ``standard``: what a plain program does: open (confined), seek, buffered read, close;
  nothing cached.

Every key is opened by :func:`rlm.storage.confine.open_beneath`. A descriptor is trusted to
still be the file at its key for ``revalidate_s``; after that the key is resolved again and
a replaced file gets a new descriptor.

Residual race (honest): ``mmap`` hands out views into the page cache. The ``fstat`` check
before each slice catches a file that was truncated *before* the read, so it falls back
instead of touching pages past the new end. A file truncated *after* that check, while a
caller still holds the view (encoding it, summing it), makes the kernel raise SIGBUS in the
caller and no user-space check can prevent it. Files served by a local connector must
therefore only be replaced (write a new file, ``rename`` it over), never truncated or
rewritten in place; a reader that cannot trust that should ask for ``direct``.
"""

from __future__ import annotations

import asyncio
import mmap
import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from rlm.errors import InternalError, InvalidInput
from rlm.models.storage import ReadMethod
from rlm.storage.confine import open_beneath
from rlm.storage.keys import local_key_parts
from rlm.storage.loop import EventLoopThread
from rlm.storage.ranges import ByteRange, clamp_range, split_range
from rlm.storage.reasons import Reason, invalid
from rlm.storage.settings import LocalConnector
from rlm.storage.store import METHODS, StoreRead

__all__ = ["LocalStore"]

_StatKey = tuple[int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns


def _stat_key(st: os.stat_result) -> _StatKey:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class _OwnedFd:
    """A descriptor closed when the last reference to it goes.

    Readers hold the object while they use ``fd``, so evicting it from a cache can never
    close a descriptor under a read in flight (and let the number be reused for another
    file).
    """

    __slots__ = ("__weakref__", "_finalizer", "fd")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._finalizer = weakref.finalize(self, os.close, fd)


class _Handle(_OwnedFd):
    """A confined descriptor of one key, with what was last seen of the file."""

    __slots__ = ("checked_at", "dev", "ino", "seen")

    def __init__(self, fd: int, st: os.stat_result, now: float) -> None:
        super().__init__(fd)
        self.dev = st.st_dev
        self.ino = st.st_ino
        self.checked_at = now
        self.seen: _StatKey | None = None


class _Map:
    """A read-only map of a whole file and a memoryview over it."""

    __slots__ = ("_buffer", "mm", "view")

    def __init__(self, fd: int, size: int) -> None:
        # mmap dup()s the descriptor, so the map outlives the handle it came from.
        self.mm = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
        self.view = memoryview(self.mm)
        self._buffer: pa.Buffer | None = None

    @property
    def buffer(self) -> pa.Buffer:
        """The map as a pyarrow Buffer (zero-copy), for Arrow readers."""
        if self._buffer is None:
            self._buffer = pa.py_buffer(self.mm)
        return self._buffer


class LocalStore:
    """Byte ranges of files beneath a local directory.

    Args:
        name: The connector's name (for messages).
        config: The connector's settings.
        loop: The shared event loop (for ``async``).
        part_bytes: Part size of an ``async`` read.
        max_concurrency: Parts of one ``async`` read in flight.
        clock: Monotonic seconds, for descriptor revalidation.
        use_openat2: Force ``openat2`` or the ``O_NOFOLLOW`` walk (``None``: detect).
    """

    methods: frozenset[ReadMethod] = frozenset(METHODS)
    default_method: ReadMethod = "mmap"

    def __init__(
        self,
        name: str,
        config: LocalConnector,
        loop: EventLoopThread,
        *,
        part_bytes: int = 4 * 1024 * 1024,
        max_concurrency: int = 8,
        clock: Callable[[], float] = time.monotonic,
        use_openat2: bool | None = None,
    ) -> None:
        self.name = name
        self._config = config
        self._loop = loop
        self._part_bytes = part_bytes
        self._max_concurrency = max_concurrency
        self._clock = clock
        self._use_openat2 = use_openat2
        self._lock = threading.Lock()
        self._root_fd: _OwnedFd | None = None
        # Keyed by the key as given: a hit skips parsing a key that was already validated.
        self._handles: OrderedDict[str, _Handle] = OrderedDict()
        self._maps: OrderedDict[_StatKey, _Map] = OrderedDict()
        self._closed = False

    # -- descriptors -------------------------------------------------------------------

    def _root(self) -> _OwnedFd:
        with self._lock:
            if self._closed:
                raise InternalError(f"storage connector {self.name!r} is closed")
            if self._root_fd is None:
                root = self._config.root
                try:
                    if self._config.create_root:
                        root.mkdir(parents=True, exist_ok=True)
                    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                except OSError as err:
                    raise InternalError(
                        f"the root of storage connector {self.name!r} cannot be opened",
                        {"connector": self.name, "errno": err.errno},
                    ) from None
                self._root_fd = _OwnedFd(fd)
            return self._root_fd

    def _open(self, key: str) -> int:
        root = self._root()
        return open_beneath(
            root.fd,
            local_key_parts(key),
            key=key,
            use_openat2=self._use_openat2,
            follow_symlinks=self._config.follow_symlinks,
        )

    def _handle(self, key: str) -> _Handle:
        now = self._clock()
        with self._lock:
            cached = self._handles.get(key)
            if cached is not None and now - cached.checked_at < self._config.revalidate_s:
                self._handles.move_to_end(key)
                return cached
        parts = local_key_parts(key)
        root = self._root()
        try:
            fd = open_beneath(
                root.fd,
                parts,
                key=key,
                use_openat2=self._use_openat2,
                follow_symlinks=self._config.follow_symlinks,
            )
        except Exception:
            with self._lock:
                self._handles.pop(key, None)
            raise
        try:
            st = os.fstat(fd)
        except OSError:
            os.close(fd)
            raise
        with self._lock:
            cached = self._handles.get(key)
            if cached is not None and (cached.dev, cached.ino) == (st.st_dev, st.st_ino):
                cached.checked_at = now
                self._handles.move_to_end(key)
                handle = cached
            else:
                handle = _Handle(fd, st, now)
                self._handles[key] = handle
                while len(self._handles) > self._config.max_open_files:
                    self._handles.popitem(last=False)
                fd = -1
        if fd >= 0:
            os.close(fd)  # The file at the key is the one already cached.
        return handle

    def _map(self, handle: _Handle, key: _StatKey) -> _Map:
        with self._lock:
            found = self._maps.get(key)
            if found is not None:
                self._maps.move_to_end(key)
                return found
        made = _Map(handle.fd, key[2])
        with self._lock:
            found = self._maps.get(key)
            if found is not None:  # Another thread mapped it meanwhile; keep one.
                return found
            self._maps[key] = made
            while len(self._maps) > self._config.max_maps:
                # Views handed out keep their map alive; dropping it here only forgets it.
                self._maps.popitem(last=False)
        return made

    # -- reads -------------------------------------------------------------------------

    def size(self, key: str) -> int:
        """The file's size in bytes.

        Raises:
            Forbidden: the key leaves the root.
            InvalidInput: no regular file at the key.
        """
        return os.fstat(self._handle(key).fd).st_size

    def read(self, key: str, rng: ByteRange, method: ReadMethod) -> StoreRead:
        """Read a validated range, clamped to the file.

        Args:
            key: The key beneath the root.
            rng: The range as asked for.
            method: ``mmap``, ``direct``, ``async`` or ``standard``.

        Raises:
            Forbidden: the key leaves the root.
            InvalidInput: no regular file at the key, or ``start`` past its end.
        """
        if method == "standard":
            return self._read_standard(key, rng)
        handle = self._handle(key)
        st = os.fstat(handle.fd)
        clamped = clamp_range(rng, st.st_size)
        if method == "mmap":
            return self._read_mmap(handle, st, clamped)
        if method == "async":
            return self._read_async(handle, clamped, st.st_size)
        return _direct(handle, clamped, st.st_size)

    def _read_mmap(self, handle: _Handle, st: os.stat_result, rng: ByteRange) -> StoreRead:
        key = _stat_key(st)
        mapped: _Map | None = None
        with self._lock:
            changed = handle.seen is not None and handle.seen != key
            handle.seen = key
            if changed:
                for stale in [k for k in self._maps if k[:2] == key[:2] and k != key]:
                    del self._maps[stale]
            else:
                # The usual case, a map already made, costs this one lock, not two.
                mapped = self._maps.get(key)
                if mapped is not None:
                    self._maps.move_to_end(key)
        if changed:
            # The file moved under a map; a copy is safe where a stale map is not.
            return _direct(handle, rng, st.st_size)
        if mapped is None:
            mapped = self._map(handle, key)
        return StoreRead(mapped.view[rng.start : rng.end], "mmap", rng, st.st_size)

    def _read_async(self, handle: _Handle, rng: ByteRange, size: int) -> StoreRead:
        parts = split_range(rng, self._part_bytes)
        out = bytearray(rng.length)
        view = memoryview(out)
        limit = self._max_concurrency

        async def _gather() -> list[int]:
            gate = asyncio.Semaphore(limit)

            async def _one(part: ByteRange) -> int:
                target = view[part.start - rng.start : part.end - rng.start]
                async with gate:
                    return await asyncio.to_thread(os.preadv, handle.fd, [target], part.start)

            return list(await asyncio.gather(*(_one(p) for p in parts)))

        counts = self._loop.run(_gather())
        valid = rng.length
        for part, got in zip(parts, counts, strict=True):
            if got < part.length:  # The file shrank during the read.
                valid = min(valid, part.start - rng.start + got)
        if valid == 0:
            raise _shrank(rng)
        data = view[:valid].toreadonly()
        return StoreRead(data, "async", ByteRange(rng.start, rng.start + valid), size)

    def _read_standard(self, key: str, rng: ByteRange) -> StoreRead:
        fd = self._open(key)
        with open(fd, "rb", closefd=True) as f:
            size = os.fstat(f.fileno()).st_size
            clamped = clamp_range(rng, size)
            f.seek(clamped.start)
            data = f.read(clamped.length)
        if not data:
            raise _shrank(clamped)
        return StoreRead(
            data, "standard", ByteRange(clamped.start, clamped.start + len(data)), size
        )

    def open_input_file(self, key: str) -> Any:
        """The whole file as a zero-copy ``pyarrow.BufferReader`` over its memory map."""
        handle = self._handle(key)
        st = os.fstat(handle.fd)
        if st.st_size == 0:
            return pa.BufferReader(b"")
        with self._lock:
            handle.seen = _stat_key(st)
        return pa.BufferReader(self._map(handle, _stat_key(st)).buffer)

    def close(self) -> None:
        """Forget every descriptor and map; each closes once no reader holds it."""
        with self._lock:
            self._closed = True
            self._handles.clear()
            self._maps.clear()
            self._root_fd = None


def _shrank(rng: ByteRange) -> InvalidInput:
    # The file was truncated below ``start`` between its fstat and the read.
    return invalid(
        Reason.START_PAST_EOF,
        f"start {rng.start} is at or past the end of the file",
        field="start",
        start=rng.start,
    )


def _direct(handle: _Handle, rng: ByteRange, size: int) -> StoreRead:
    data = _pread_all(handle.fd, rng)
    if not data:
        raise _shrank(rng)
    return StoreRead(data, "direct", ByteRange(rng.start, rng.start + len(data)), size)


def _pread_all(fd: int, rng: ByteRange) -> bytes:
    data = os.pread(fd, rng.length, rng.start)
    if len(data) == rng.length or not data:
        return data
    # A short read: a signal, or the file shrank meanwhile. Read on until EOF.
    chunks = [data]
    got = len(data)
    while got < rng.length:
        more = os.pread(fd, rng.length - got, rng.start + got)
        if not more:
            break
        chunks.append(more)
        got += len(more)
    return b"".join(chunks)
