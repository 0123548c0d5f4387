"""The security state file: ``<state dir>/security.db`` (mode 0600) and the audit key.

One SQLite file (WAL) holds the audit log (:mod:`rlm.security.audit`) and each org's changed
policies, so a policy change and its audit record commit together. It sits beside
``state.db`` and ``quotas.db`` in the state directory, as the quota journal does, so its
writer (the security actor) never contends with the task table's for SQLite's one write lock.
The file and the key are created 0600 in a 0700 directory, whatever the umask.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
import stat
from pathlib import Path
from typing import Final

from rlm.models.security import SecurityPolicy

__all__ = [
    "AUDIT_KEY_FILENAME",
    "SECURITY_DB_FILENAME",
    "PolicyStore",
    "load_or_create_key",
    "open_security_db",
]

SECURITY_DB_FILENAME: Final = "security.db"
AUDIT_KEY_FILENAME: Final = "audit-key"

_POLICY_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS policies (
    org_id TEXT NOT NULL,
    policy_id TEXT NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (org_id, policy_id)
);
"""


def _private_file(path: Path) -> None:
    """Create ``path`` 0600 if missing (its directory 0700); tighten it if it is looser."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def open_security_db(path: Path, *, read_only: bool = False) -> sqlite3.Connection:
    """Open the security state file (created 0600 unless ``read_only``).

    Args:
        path: ``<state dir>/security.db``.
        read_only: Open without creating or writing (the CLI's ``verify`` and ``events``).
    """
    if read_only:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    else:
        _private_file(path)
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.executescript(_POLICY_SCHEMA)
        # SQLite creates -wal and -shm with the database's mode; make sure of it anyway.
        for suffix in ("-wal", "-shm"):
            side = Path(f"{path}{suffix}")
            with contextlib.suppress(FileNotFoundError):
                if stat.S_IMODE(side.stat().st_mode) & 0o077:
                    side.chmod(0o600)
    return conn


def load_or_create_key(path: Path, *, create: bool = True) -> bytes:
    """The audit log's HMAC key: 32 random bytes in ``path`` (0600), created on first use.

    Raises:
        FileNotFoundError: ``create`` is false and there is no key.
        PermissionError: the key file is readable by group or others (it may have leaked).
    """
    if create and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            pass  # another process made it first: read theirs
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32) + "\n")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise PermissionError(f"{path} is readable by others (mode {mode:o}); expected 0600")
    key = path.read_text().strip()
    if len(key) < 64:
        raise PermissionError(f"{path} holds no complete key")
    return bytes.fromhex(key)


class PolicyStore:
    """Each org's changed policies (the ones it never changed are the defaults)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def changed(self, org_id: str) -> dict[str, SecurityPolicy]:
        """The org's changed policies by id."""
        rows = self._conn.execute(
            "SELECT policy_id, doc FROM policies WHERE org_id = ?", (org_id,)
        ).fetchall()
        return {str(pid): SecurityPolicy.model_validate_json(doc) for pid, doc in rows}

    def save(self, org_id: str, policy: SecurityPolicy) -> None:
        """Store the org's policy (inside the caller's transaction)."""
        self._conn.execute(
            "INSERT INTO policies (org_id, policy_id, doc) VALUES (?, ?, ?) "
            "ON CONFLICT (org_id, policy_id) DO UPDATE SET doc = excluded.doc",
            (org_id, policy.policy_id, policy.model_dump_json(by_alias=True)),
        )
