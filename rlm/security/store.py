"""The security state file: ``<state dir>/security.db`` (mode 0600) and the audit key.

One SQLite file (WAL) holds the audit log (:mod:`rlm.security.audit`) and each org's changed
policies, so a policy change and its audit record commit together. It sits beside
``state.db`` and ``quotas.db`` in the state directory, as the quota journal does, so its
writer (the security actor) never contends with the task table's for SQLite's one write lock.
The file and the key are created 0600 in a 0700 directory, whatever the umask.

With ``RLM_DATABASE_URL`` the same tables are in PostgreSQL (migration ``0004``), shared by
every instance: :func:`open_security_store` opens whichever applies. The key stays in each
instance's state directory (never in the database: whoever can write the database must not
be able to re-MAC the chain), so every instance needs the same ``audit-key`` file;
:func:`claim_key` refuses, at start, an instance whose key is not the chain's.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import secrets
import sqlite3
import stat
from hashlib import sha256
from pathlib import Path
from typing import Final

from rlm.errors import InternalError
from rlm.models.security import SecurityPolicy

__all__ = [
    "AUDIT_KEY_FILENAME",
    "SECURITY_DB_FILENAME",
    "PolicyStore",
    "claim_key",
    "audit_key_at_start",
    "claim_key_at_start",
    "key_fingerprint",
    "load_or_create_key",
    "open_security_db",
    "open_security_store",
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


def open_security_store(
    state_dir: Path, database_url: str | None = None, *, read_only: bool = False
) -> sqlite3.Connection:
    """The security tables: ``<state_dir>/security.db``, or PostgreSQL's with ``database_url``.

    Args:
        state_dir: The instance's state directory.
        database_url: A migrated PostgreSQL database shared by the instances.
        read_only: Open the SQLite file without creating or writing it (no effect on
            PostgreSQL, where the CLI only reads).

    Raises:
        InternalError: The database is unreachable or its schema is not this code's.
    """
    if database_url is None:
        return open_security_db(state_dir / SECURITY_DB_FILENAME, read_only=read_only)
    from rlm.db.compat import open_compat

    # Every BEGIN takes the advisory lock named for the file: the chain's appends are
    # serialised across instances as SQLite's write lock serialises them across processes.
    return open_compat(database_url, SECURITY_DB_FILENAME)


def key_fingerprint(key: bytes) -> str:
    """What identifies ``key`` without revealing it: an HMAC of a fixed label under it."""
    return hmac.new(key, b"rlm-audit-key-fingerprint", sha256).hexdigest()


def claim_key(conn: sqlite3.Connection, key: bytes, *, record: bool = True) -> None:
    """Make sure ``key`` is the key of the shared chain (PostgreSQL's ``audit_key`` row).

    The first instance records its key's fingerprint; every later one must hold the same key,
    or records it appended would break the chain for everyone else.

    Args:
        conn: A connection to the PostgreSQL security tables.
        key: This instance's audit key.
        record: Record the fingerprint when there is none yet (not for a read-only check).

    Raises:
        InternalError: The chain was started with another key.
    """
    mine = key_fingerprint(key)
    if record:
        conn.execute(
            "INSERT INTO audit_key (id, fingerprint) VALUES (1, ?) ON CONFLICT (id) DO NOTHING",
            (mine,),
        )
    row = conn.execute("SELECT fingerprint FROM audit_key WHERE id = 1").fetchone()
    if row is not None and str(row[0]) != mine:
        raise InternalError(
            f"this instance's {AUDIT_KEY_FILENAME} is not the key the shared audit log was "
            f"started with: copy {AUDIT_KEY_FILENAME} from an instance already on this "
            "database into this instance's state directory (mode 0600)"
        )


def audit_key_at_start(state_dir: Path) -> bytes:
    """This instance's audit key (created if missing), or a clear refusal to start.

    ``rlm serve`` calls this before it starts Ray, for the reason :func:`claim_key_at_start`
    gives: a key the security actor cannot load would break only the audit log.

    Raises:
        InternalError: The key file is readable by group or others, or holds no key (the
            message names the file and the fix, never the key).
    """
    path = state_dir / AUDIT_KEY_FILENAME
    try:
        return load_or_create_key(path)
    except PermissionError as err:
        raise InternalError(
            f"refusing to start: {err}. The audit key signs the security log; if others could "
            f"read it, treat it as leaked. Otherwise `chmod 600 {path}`",
            {"keyFile": str(path), "reason": "audit_key_unsafe"},
        ) from None


def claim_key_at_start(state_dir: Path, database_url: str) -> None:
    """Refuse, before anything of an instance starts, an audit key that is not the shared
    chain's; the first instance on the database records its key's fingerprint.

    ``rlm serve`` calls this before it starts Ray: the security actor makes the same check, but
    an actor that fails to start only breaks the audit log, behind a service that would answer
    as if nothing were wrong.

    Args:
        state_dir: This instance's state directory (its ``audit-key``, created if missing).
        database_url: The shared PostgreSQL database (its schema already migrated).

    Raises:
        InternalError: The chain was started with another key (the message names the key file
            and the database, never the key), or the database is unreachable.
    """
    from rlm.db.compat import open_compat
    from rlm.db.pool import close_pools
    from rlm.db.url import redact

    path = state_dir / AUDIT_KEY_FILENAME
    key = audit_key_at_start(state_dir)
    conn = open_compat(database_url, SECURITY_DB_FILENAME)
    try:
        claim_key(conn, key)
    except InternalError:
        raise InternalError(
            f"refusing to start: the audit key {path} is not the key the shared audit log in "
            f"{redact(database_url)} was started with (the database keeps that key's "
            "fingerprint; records appended with another key would break the chain for every "
            f"instance): copy {AUDIT_KEY_FILENAME} from an instance already on this database "
            f"into {state_dir} (mode 0600)",
            {"keyFile": str(path), "reason": "audit_key_mismatch"},
        ) from None
    finally:
        conn.close()
        close_pools()  # the caller's process needs no connection of its own from here on


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
