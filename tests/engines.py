"""Stopping the engines tests leave in the session's Ray, and their audit writers.

An engine's core is a detached actor, and so is its state directory's security actor (the
audit log's one writer, which outlives ``Hypervisor.shutdown_engine`` by design: the API
replicas of a running service record through it). In a test session every temporary state
directory gets its own, and each idle actor costs its Ray worker's background CPU (about 1 %
of a core here): left running, the engines of the earlier modules slow every later one. The
suites' fixtures call :func:`reap` when a module or package is done with them.
"""

from __future__ import annotations

from contextlib import suppress

from rlm.config import Settings
from rlm.runtime.hypervisor import core_actor_name
from rlm.runtime.security import security_actor_name

__all__ = ["keep", "reap", "release"]

#: Actor names a longer-lived fixture still uses (never reaped).
_KEPT: set[str] = set()
_PREFIXES = ("rlm-core-", "rlm-security-")


def _names(settings: Settings) -> set[str]:
    return {core_actor_name(settings), security_actor_name(settings)}


def keep(settings: Settings) -> None:
    """Mark the engine of ``settings`` as still in use (a package-scoped fixture's)."""
    _KEPT.update(_names(settings))


def release(settings: Settings) -> None:
    """Undo :func:`keep`: the engine may be reaped."""
    _KEPT.difference_update(_names(settings))


def reap() -> list[str]:
    """Kill every engine core and security actor of the session's Ray not kept.

    The core takes the actors it started with it (agents, session hosts, the webhook worker,
    the input holder). Nothing to do when no Ray runs in this process.

    Returns:
        The names of the actors killed.
    """
    import ray

    if not ray.is_initialized():
        return []
    killed = []
    for entry in ray.util.list_named_actors(all_namespaces=True):
        name, namespace = entry["name"], entry["namespace"]
        if not name.startswith(_PREFIXES) or name in _KEPT:
            continue
        with suppress(ValueError):  # gone already
            ray.kill(ray.get_actor(name, namespace=namespace), no_restart=True)
            killed.append(name)
    return killed
