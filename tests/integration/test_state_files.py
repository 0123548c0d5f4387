"""A running engine's state directory is 0700 and its databases (and their -wal/-shm) 0600."""

from __future__ import annotations

import stat

import pytest

import rlm

pytestmark = pytest.mark.integration


def test_the_engines_state_files_are_private(hv: rlm.Hypervisor) -> None:
    hv.execute(
        {"type": "parallel", "description": "write", "input": {"items": [1], "operation": "sum"}}
    )
    state = hv.settings.state_dir
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    names = {p.name for p in state.iterdir() if p.is_file()}
    databases = {n for n in names if n.startswith(("state.db", "quotas.db"))}
    assert {"state.db", "state.db-wal", "quotas.db"} <= databases, names
    for name in databases:
        assert stat.S_IMODE((state / name).stat().st_mode) == 0o600, name
