"""Open a file strictly beneath a directory, atomically.

``realpath`` followed by a prefix check races (a path component can become a symlink between
the check and the open); pyarrow's ``SubTreeFileSystem`` lets ``../`` escape and fsspec's
``DirFileSystem`` follows escaping symlinks. The kernel can do it right:

* Linux >= 5.6: ``openat2(dirfd, path, {flags, mode, resolve=RESOLVE_BENEATH |
  RESOLVE_NO_MAGICLINKS})`` resolves every component, symlinks included, and fails with
  ``EXDEV`` if resolution would leave ``dirfd``. Python has no wrapper, so it is called
  through ``ctypes`` and ``syscall(2)``.
* Elsewhere (``ENOSYS``): a walk that opens one component at a time with ``O_NOFOLLOW``
  relative to the descriptor of the directory before it. A symbolic link met on the way is
  read with ``readlinkat`` and its target walked the same way; absolute targets and ``..``
  above the root are refused. Every step is relative to a descriptor already held, so
  renaming or swapping path components meanwhile cannot lead outside the root.

Either way the file is opened ``O_NONBLOCK`` (a FIFO cannot hang the open) and ``O_NOCTTY``,
then ``fstat`` must show a regular file.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import sys
from collections import deque
from collections.abc import Callable, Sequence

from rlm.errors import InternalError, RLMError
from rlm.storage.reasons import Reason, forbidden, invalid

__all__ = [
    "RESOLVE_BENEATH",
    "RESOLVE_NO_MAGICLINKS",
    "RESOLVE_NO_SYMLINKS",
    "open_beneath",
    "openat2_available",
]

RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
_SYS_OPENAT2 = 437  # The same number on every Linux architecture (new syscalls are unified).
_MAX_SYMLINKS = 40  # Linux's own limit before ELOOP.
_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY


class _OpenHow(ctypes.Structure):
    _fields_ = [
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    ]


_syscall: Callable[..., int] | None = None
_openat2_state: bool | None = None if sys.platform == "linux" else False


def _libc_syscall() -> Callable[..., int]:
    global _syscall
    if _syscall is None:
        fn = ctypes.CDLL(None, use_errno=True).syscall
        fn.restype = ctypes.c_long
        _syscall = fn
    return _syscall


def _openat2(dir_fd: int, path: bytes, flags: int, resolve: int) -> int:
    """Raw ``openat2``; raises ``OSError`` with the kernel's errno."""
    how = _OpenHow(flags, 0, resolve)
    fd = _libc_syscall()(
        ctypes.c_long(_SYS_OPENAT2),
        ctypes.c_int(dir_fd),
        ctypes.c_char_p(path),
        ctypes.byref(how),
        ctypes.c_size_t(ctypes.sizeof(how)),
    )
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(fd)


def openat2_available() -> bool:
    """Whether this kernel has ``openat2`` (probed once, then remembered)."""
    global _openat2_state
    if _openat2_state is None:
        try:
            # An empty path with no AT_EMPTY_PATH must fail with ENOENT where openat2 exists.
            os.close(_openat2(-100, b"", _OPEN_FLAGS, RESOLVE_BENEATH))
            _openat2_state = True
        except OSError as err:
            _openat2_state = err.errno != errno.ENOSYS
    return _openat2_state


def _map_error(err: OSError, key: str) -> RLMError:
    code = err.errno
    if code == errno.EXDEV:
        return forbidden(Reason.ESCAPES_ROOT, "the key resolves outside the connector's root")
    if code == errno.ELOOP:
        return forbidden(
            Reason.SYMLINK_REFUSED,
            "the key goes through a symbolic link this connector does not follow, a link loop "
            "or a magic link",
        )
    if code in (errno.ENOENT, errno.ENOTDIR):
        return invalid(Reason.MISSING_KEY, f"no file at key {key!r}", field="key", key=key)
    if code in (errno.EACCES, errno.EPERM):
        return forbidden(Reason.PERMISSION_DENIED, "the file may not be read", key=key)
    if code in (errno.ENXIO, errno.ENODEV, errno.EOPNOTSUPP, errno.EISDIR):
        return invalid(
            Reason.NOT_REGULAR_FILE, f"{key!r} is not a regular file", field="key", key=key
        )
    if code == errno.ENAMETOOLONG:
        return invalid(Reason.INVALID_KEY, "a key component is too long", field="key")
    return InternalError(f"opening a storage key failed: {os.strerror(code or 0)}", {"errno": code})


def _require_regular(fd: int, key: str) -> int:
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        os.close(fd)
        raise
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise invalid(
            Reason.NOT_REGULAR_FILE, f"{key!r} is not a regular file", field="key", key=key
        )
    return fd


def _walk_nofollow(root_fd: int, parts: Sequence[str], follow_symlinks: bool = True) -> int:
    """Resolve ``parts`` beneath ``root_fd`` one ``O_NOFOLLOW`` step at a time."""
    held: list[int] = []  # Directories entered beneath the root, innermost last.
    pending = deque(parts)
    links = 0
    try:
        while pending:
            name = pending.popleft()
            if name in ("", "."):
                continue
            if name == "..":
                if not held:
                    raise OSError(errno.EXDEV, "escapes the root")
                os.close(held.pop())
                continue
            here = held[-1] if held else root_fd
            last = not any(p not in ("", ".") for p in pending)
            flags = _OPEN_FLAGS | os.O_NOFOLLOW | (0 if last else os.O_DIRECTORY)
            try:
                fd = os.open(name, flags, dir_fd=here)
            except OSError as err:
                if err.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                try:
                    target = os.readlink(name, dir_fd=here)
                except OSError:
                    raise err from None
                if not follow_symlinks:
                    raise OSError(errno.ELOOP, "symbolic links are not followed") from None
                links += 1
                if links > _MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, "too many symbolic links") from None
                if target.startswith("/"):
                    raise OSError(errno.EXDEV, "absolute symbolic link") from None
                pending.extendleft(reversed(target.split("/")))
                continue
            if last:
                return fd
            held.append(fd)
        # Only '.', '..' or an empty target were left: the key names a directory.
        raise OSError(errno.EISDIR, "not a file")
    finally:
        for fd in held:
            os.close(fd)


def open_beneath(
    root_fd: int,
    parts: Sequence[str],
    *,
    key: str | None = None,
    use_openat2: bool | None = None,
    follow_symlinks: bool = True,
) -> int:
    """Open a regular file beneath a directory for reading, refusing any escape.

    Args:
        root_fd: A descriptor of the root directory.
        parts: Path components, as from :func:`rlm.storage.keys.local_key_parts`.
        key: The key to name in errors (defaults to ``"/".join(parts)``).
        use_openat2: Force ``openat2`` (``True``) or the ``O_NOFOLLOW`` walk (``False``);
            ``None`` uses ``openat2`` where the kernel has it.
        follow_symlinks: Follow symbolic links that stay beneath the root; ``False`` refuses
            every link on the way (``symlink_refused``).

    Returns:
        A new descriptor (``O_RDONLY | O_CLOEXEC | O_NONBLOCK``) the caller must close.

    Raises:
        Forbidden: the key resolves outside the root (``escapes_root``), through a link loop
            or magic link (``symlink_refused``), or may not be read (``permission_denied``).
        InvalidInput: no such file (``missing_key``), not a regular file
            (``not_regular_file``) or a malformed component (``invalid_key``).
    """
    shown = key if key is not None else "/".join(parts)
    if any("\x00" in p for p in parts):
        raise invalid(Reason.INVALID_KEY, "the key contains a NUL byte", field="key")
    if use_openat2 is None:
        use_openat2 = openat2_available()
    try:
        if use_openat2:
            path = os.fsencode("/".join(parts))
            if path.startswith(b"/"):
                raise OSError(errno.EXDEV, "absolute path")
            resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS
            if not follow_symlinks:
                resolve |= RESOLVE_NO_SYMLINKS
            fd = _openat2(root_fd, path, _OPEN_FLAGS, resolve)
        else:
            fd = _walk_nofollow(root_fd, parts, follow_symlinks)
    except OSError as err:
        if use_openat2 and err.errno == errno.ENOSYS:
            # A kernel (or seccomp filter) without openat2 behind a probe that said yes.
            global _openat2_state
            _openat2_state = False
            return open_beneath(
                root_fd, parts, key=key, use_openat2=False, follow_symlinks=follow_symlinks
            )
        raise _map_error(err, shown) from None
    return _require_regular(fd, shown)
