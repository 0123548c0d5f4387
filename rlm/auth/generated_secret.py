"""The generated development secret: created once, atomically, and guarded on every read.

The embedded default (HS256 allowed, no secret configured) generates a 256-bit random secret at
first start into ``<state_dir>/jwt-secret`` with mode 0600. Creation is atomic: the secret is
written to a private temporary file (``mkstemp`` makes it 0600 whatever the umask) and then
hard-linked into place, which fails if the name exists, so concurrent first starts agree on one
secret and no reader ever sees a partial file. On file systems without hard links an exclusive
create (``O_CREAT | O_EXCL``) is used instead, and readers wait briefly for the content.

An existing file that is a symlink, is not a regular file, is owned by another user, or is
readable or writable by group/others is *refused*, not repaired: a secret others could read may
already have leaked, and silently tightening the mode would hide that. The secret is never
logged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import stat
import tempfile
import time
from pathlib import Path
from typing import Final

from rlm.auth.settings import AuthConfigurationError

__all__ = ["GENERATED_SECRET_FILENAME", "MIN_SECRET_BYTES", "load_or_create_secret"]

_log = logging.getLogger(__name__)

GENERATED_SECRET_FILENAME: Final = "jwt-secret"
"""Name of the generated development secret inside the state directory."""

MIN_SECRET_BYTES: Final = 32
"""Shortest HMAC secret accepted (RFC 7518 §3.2 for HS256)."""

_GENERATED_SECRET_BYTES: Final = 32  # 256 bits of entropy


def load_or_create_secret(path: Path) -> bytes:
    """Read the generated secret at ``path``, creating it first if it does not exist.

    Args:
        path: ``<state_dir>/jwt-secret``.

    Returns:
        The secret (base64url text of 32 random bytes, as bytes).

    Raises:
        AuthConfigurationError: The directory cannot be created, or the file is refused
            (symlink, foreign owner, group/other access, truncated).
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise AuthConfigurationError(
            f"cannot create the state directory {str(path.parent)!r}: {exc.strerror}"
        ) from None
    if not os.path.lexists(path) and _create_secret_file(path):
        _log.warning(
            "generated a new JWT secret at %s (development only; production needs "
            "RLM_AUTH__SECRET or RLM_AUTH__SECRET_FILE)",
            path,
        )
    return _read_secret_file(path)


def _create_secret_file(path: Path) -> bool:
    """Create ``path`` with a fresh secret; False if another process created it first."""
    content = (secrets.token_urlsafe(_GENERATED_SECRET_BYTES) + "\n").encode()
    # mkstemp creates the file 0600 whatever the umask; the content is complete before the
    # file appears under its final name, and link() refuses to replace an existing file.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:
            # File systems without hard links: fall back to an exclusive create. A concurrent
            # reader may briefly see a short file; _read_secret_file waits for it to fill.
            return _create_exclusive(path, content)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    _fsync_dir(path.parent)
    return True


def _create_exclusive(path: Path, content: bytes) -> bool:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as fh:
        fh.write(content)
        fh.flush()
        os.fsync(fh.fileno())
    _fsync_dir(path.parent)
    return True


def _fsync_dir(directory: Path) -> None:
    # Make the new directory entry durable; not every platform can open a directory.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _read_secret_file(path: Path, attempts: int = 10) -> bytes:
    """Read and check the generated secret (regular file, ours, mode 0600, long enough)."""
    for attempt in range(attempts):
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError as exc:
            raise AuthConfigurationError(
                f"cannot open the JWT secret {str(path)!r} (a symlink is refused): {exc.strerror}"
            ) from None
        with os.fdopen(fd, "rb") as fh:
            info = os.fstat(fh.fileno())
            _check_secret_file(path, info)
            secret = fh.read().strip()
        if len(secret) >= MIN_SECRET_BYTES:
            return secret
        if attempt + 1 < attempts:
            time.sleep(0.02)  # another process may still be writing it (exclusive-create path)
    raise AuthConfigurationError(
        f"the JWT secret {str(path)!r} is shorter than {MIN_SECRET_BYTES} bytes; delete it to "
        "generate a new one"
    )


def _check_secret_file(path: Path, info: os.stat_result) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise AuthConfigurationError(f"the JWT secret {str(path)!r} is not a regular file")
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise AuthConfigurationError(
            f"the JWT secret {str(path)!r} is owned by another user; refusing to use it"
        )
    if info.st_mode & 0o077:
        raise AuthConfigurationError(
            f"the JWT secret {str(path)!r} is accessible to group/others "
            f"(mode {stat.S_IMODE(info.st_mode):04o}) and may have leaked; delete it to generate "
            "a new one, or chmod 600 it if you are sure nobody read it"
        )
