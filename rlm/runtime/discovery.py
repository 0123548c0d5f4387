"""Finding the engine that already runs on a state directory, and who holds it otherwise.

An engine registers itself in the state file's ``instances`` table with its pid, host,
heartbeat and the GCS address of its Ray cluster (:class:`~rlm.tasks.store.TaskStore`). A
command started later on the same state directory joins that Ray, and so the engine, instead
of starting a second one that would find the quota store locked. When the store is held by a
process that is not such an engine, the command says which process and what to do, in one
sentence (:class:`~rlm.errors.EngineUnavailable`).

This module does not import Ray: it reads the state file and ``/proc`` only.
"""

from __future__ import annotations

import os
from pathlib import Path

from rlm.config import Settings
from rlm.errors import EngineUnavailable
from rlm.tasks.store import EngineInstance, TaskStore

__all__ = ["engine_on", "held_by", "resolve_address", "store_in_use"]

_WHAT_TO_DO = (
    "stop it, use another state directory (RLM_STATE_DIR), or join its Ray cluster "
    "with --address / RAY_ADDRESS"
)


def engine_on(settings: Settings) -> EngineInstance | None:
    """The live engine registered on ``settings.state_dir`` with a Ray address, if any.

    With a PostgreSQL state store (``RLM_DATABASE_URL``) there is none to join through the
    state directory: instances registered in the database belong to several clusters, and
    each keeps its own (join one with ``--address``).
    """
    if settings.database_url is not None or not settings.database_path.exists():
        return None
    store = TaskStore(settings.database_path)
    try:
        live = store.live_instances()
    finally:
        store.close()
    return next((i for i in live if i.ray_address), None)


def held_by(path: Path) -> int | None:
    """The id of another process that has ``path`` open (Linux ``/proc``), or ``None``."""
    proc = Path("/proc")
    if not path.exists() or not proc.is_dir():
        return None
    target = path.resolve()
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:  # gone, or another user's
            continue
        for fd in fds:
            try:
                if Path(os.readlink(fd)) == target:
                    return int(entry.name)
            except OSError:
                continue
    return None


def _command_of(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    words = raw.replace(b"\0", b" ").decode(errors="replace").strip()
    return words[:80] or "?"


def store_in_use(settings: Settings) -> EngineUnavailable | None:
    """The error to raise when another process holds the quota store, else ``None``."""
    if settings.database_url is not None:
        return None  # a database is shared, not held
    path = settings.state_dir / "quotas.db"
    pid = held_by(path)
    if pid is None:
        return None
    return EngineUnavailable(
        f"the state directory {settings.state_dir} is in use by process {pid} "
        f"({_command_of(pid)}), which is not a running rlm engine this command can join: "
        + _WHAT_TO_DO,
        {"pid": pid, "path": str(path)},
    )


def resolve_address(
    address: str | None, settings: Settings
) -> tuple[str | None, EngineInstance | None]:
    """The Ray address to initialise with, and the engine it joins (when found by the store).

    The order: ``address``, then ``settings.ray_address`` (``RLM_RAY_ADDRESS``), then
    ``RAY_ADDRESS``, then the live engine registered on the state directory; ``None`` (start a
    local Ray) only when none of them names one.

    Raises:
        EngineUnavailable: no engine is registered, but another process holds the quota store.
    """
    chosen = address or settings.ray_address or os.environ.get("RAY_ADDRESS") or None
    if chosen is not None:
        return chosen, None
    engine = engine_on(settings)
    if engine is not None:
        return engine.ray_address, engine
    refusal = store_in_use(settings)
    if refusal is not None:
        raise refusal
    return None, None
