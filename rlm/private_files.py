"""Files only the service's own user may read: the state directory (0700) and its databases
(0600), whatever the process umask.

The state directory holds every tenant's task records, quota usage and the generated JWT
secret; nobody but the service's user has any business listing or reading it. SQLite creates
a database with ``0644 & ~umask`` and gives its ``-wal`` and ``-shm`` files the mode of the
database file, so the database is created ``0600`` *before* SQLite opens it, and files left
by an older version with wider modes are tightened when they are opened again.

A directory is only tightened when this user owns it and it is not a shared sticky directory
(``/tmp``): a state directory pointed at someone else's directory is logged, not chmod-ed.

Example:
    >>> path = private_database(state_dir / "state.db")  # doctest: +SKIP
    >>> conn = sqlite3.connect(path)                       # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

__all__ = [
    "DIR_MODE",
    "FILE_MODE",
    "SQLITE_SIDE_FILES",
    "private_database",
    "private_dir",
    "tighten_database",
]

log = logging.getLogger(__name__)

#: The state directory's mode: its owner only.
DIR_MODE = 0o700

#: A database file's mode (and, through SQLite, its ``-wal`` and ``-shm`` files').
FILE_MODE = 0o600

#: The files SQLite keeps beside a database in WAL mode.
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def _mine(st: os.stat_result) -> bool:
    return st.st_uid == os.geteuid()


def private_dir(path: Path) -> Path:
    """Create ``path`` (and its parents) and make ``path`` itself mode 0700.

    Args:
        path: The directory (the state directory).

    Returns:
        ``path``.

    Raises:
        OSError: It cannot be created.
    """
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    st = path.stat()
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        if _mine(st) and not mode & stat.S_ISVTX:
            os.chmod(path, mode & ~0o077 | 0o700)
        else:
            log.warning(
                "the state directory %s is mode %o and not this user's to tighten: others may "
                "read the service's state (use a directory of the service's own)",
                path,
                mode,
            )
    return path


def _tighten(path: Path) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) & 0o077 and _mine(st):
        os.chmod(path, FILE_MODE)


def tighten_database(path: Path) -> None:
    """Make an existing database and its SQLite side files mode 0600."""
    _tighten(path)
    for suffix in SQLITE_SIDE_FILES:
        _tighten(path.with_name(path.name + suffix))


def private_database(path: Path) -> Path:
    """Prepare ``path`` for ``sqlite3.connect``: its directory 0700, the file created 0600.

    Args:
        path: The database file.

    Returns:
        ``path``.

    Raises:
        OSError: The directory or the file cannot be created.
    """
    private_dir(path.parent)
    # O_EXCL: create it only if missing, never through a symlink planted in its place.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    except FileExistsError:
        pass
    else:
        try:
            os.fchmod(fd, FILE_MODE)  # exactly 0600, whatever the umask took away
        finally:
            os.close(fd)
    tighten_database(path)
    return path
