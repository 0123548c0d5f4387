"""The state directory is 0700 and its databases (with their -wal and -shm) 0600, whatever
the umask; files an older version left wider are tightened on the next open."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from rlm.private_files import private_database, private_dir
from rlm.quotas.service import QuotaLedgerService
from rlm.tasks.store import TaskStore


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The most permissive umask: any mode we do not set ourselves would show."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("open_umask")
def test_new_state_files_are_private(tmp_path: Path) -> None:
    state = tmp_path / "state"
    tasks = TaskStore(state / "state.db")
    quotas = QuotaLedgerService(state / "quotas.db")
    quotas.reserve("ada", 1, tier="user", task_id="t1")  # something written: the WAL exists
    try:
        assert _mode(state) == 0o700
        made = sorted(p.name for p in state.iterdir())
        for name in ("state.db", "state.db-wal", "state.db-shm", "quotas.db", "quotas.db.journal"):
            assert name in made, made
        for name in made:
            assert _mode(state / name) == 0o600, (name, oct(_mode(state / name)))
    finally:
        tasks.close()
        quotas.close()


@pytest.mark.usefixtures("open_umask")
def test_files_left_wide_open_are_tightened(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    os.chmod(state, 0o755)
    for name in ("state.db", "state.db-wal", "state.db-shm"):
        (state / name).touch()
        os.chmod(state / name, 0o644)
    private_database(state / "state.db")
    assert _mode(state) == 0o700
    for name in ("state.db", "state.db-wal", "state.db-shm"):
        assert _mode(state / name) == 0o600, name


@pytest.mark.usefixtures("open_umask")
def test_a_shared_sticky_directory_is_left_alone(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    private_dir(shared)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777  # like /tmp: never chmod-ed


def test_a_symlink_in_place_of_the_database_is_not_followed_to_create(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.db"
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "state.db").symlink_to(target)
    private_database(state / "state.db")
    assert not target.exists()
