"""A throwaway PostgreSQL server on loopback, from the distribution's binaries.

Tests and benchmarks of the PostgreSQL state store need a real server. This starts one in a
temporary directory (``initdb`` + ``pg_ctl``), on a free port of 127.0.0.1 with ``trust``
authentication, and removes it on :meth:`ThrowawayPostgres.stop`. ``initdb`` refuses to run as
root, so as root the server runs as the distribution's ``postgres`` user (``runuser``).

Nothing here is skipped when PostgreSQL is missing: ``scripts/system-deps.sh`` installs it, and
a missing binary is an error that says so.

Example:
    >>> with ThrowawayPostgres() as pg:                                  # doctest: +SKIP
    ...     url = pg.url  # postgresql://postgres@127.0.0.1:PORT/postgres
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

__all__ = ["ThrowawayPostgres", "find_bindir"]

_SEARCH = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin")


def find_bindir() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl`` (``RLM_TEST_PG_BINDIR`` overrides).

    Raises:
        FileNotFoundError: No PostgreSQL server binaries are installed.
    """
    override = os.environ.get("RLM_TEST_PG_BINDIR")
    for candidate in ((override,) if override else ()) + _SEARCH:
        path = Path(candidate)
        if (path / "initdb").is_file() and (path / "pg_ctl").is_file():
            return path
    raise FileNotFoundError(
        "PostgreSQL server binaries not found (looked in "
        f"{', '.join(_SEARCH)}); run scripts/system-deps.sh to install them"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ThrowawayPostgres:
    """One PostgreSQL server in a temporary directory, for the lifetime of a test session.

    Args:
        database: A database created next to ``postgres`` (the URL names it).
        max_connections: The server's connection limit.
        durable: Keep PostgreSQL's default durability (``fsync`` on, every commit flushed):
            for benchmarks. Tests leave it off: nothing they write must outlive the server.
    """

    def __init__(
        self, *, database: str = "rlm", max_connections: int = 200, durable: bool = False
    ) -> None:
        self._bindir = find_bindir()
        self._durable = durable
        self._database = database
        self._max_connections = max_connections
        self._root: Path | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """A connection URL for the test database (user ``postgres``, no password)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self._database}"

    def database_url(self, name: str) -> str:
        """A URL for another database of this server (created if missing)."""
        self._psql(f'CREATE DATABASE "{name}"', ignore_exists=True)
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def start(self) -> ThrowawayPostgres:
        """Create the cluster and start the server; returns ``self``."""
        root = Path(tempfile.mkdtemp(prefix="rlm-pg-"))
        self._root = root
        data = root / "data"
        try:
            if os.geteuid() == 0:
                # initdb refuses root: the data directory belongs to the postgres user.
                entry = pwd.getpwnam("postgres")
                os.chown(root, entry.pw_uid, entry.pw_gid)
            self.port = _free_port()
            self._run(
                [
                    str(self._bindir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    *([] if self._durable else ["--no-sync"]),
                ]
            )
            options = (
                f"-c listen_addresses=127.0.0.1 -c port={self.port} "
                f"-c unix_socket_directories={root} -c fsync={'on' if self._durable else 'off'} "
                f"-c max_connections={self._max_connections} -c shared_buffers=32MB"
            )
            self._run(
                [
                    str(self._bindir / "pg_ctl"),
                    "-D",
                    str(data),
                    "-o",
                    options,
                    "-l",
                    str(root / "server.log"),
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            )
            self._psql(f'CREATE DATABASE "{self._database}"', ignore_exists=True)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its directory."""
        root, self._root = self._root, None
        if root is None:
            return
        try:
            if (root / "data" / "postmaster.pid").exists():
                with contextlib.suppress(subprocess.CalledProcessError):
                    self._run(
                        [
                            str(self._bindir / "pg_ctl"),
                            "-D",
                            str(root / "data"),
                            "-m",
                            "fast",
                            "-w",
                            "stop",
                        ]
                    )
        finally:
            shutil.rmtree(root, ignore_errors=True)

    def __enter__(self) -> ThrowawayPostgres:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _psql(self, sql: str, *, ignore_exists: bool = False) -> None:
        import psycopg

        with psycopg.connect(
            f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True
        ) as conn:
            try:
                conn.execute(sql.encode("utf-8"))
            except psycopg.errors.DuplicateDatabase:
                if not ignore_exists:
                    raise

    def _run(self, argv: list[str]) -> None:
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise subprocess.CalledProcessError(
                result.returncode, argv, result.stdout, result.stderr
            )
