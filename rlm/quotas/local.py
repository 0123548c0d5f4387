"""The quota ledger of a state directory, opened in this process when no engine runs on it.

An admin command (``rlm quota show``, ``rlm tenants load``) that finds no engine to join
needs no engine either: it opens the ledger's store itself, calls the ledger's methods as the
engine would (``hv.quotas(method, *args)`` has the same shape), and closes the store when done.
Nothing here imports Ray, so such a command answers in about a second instead of starting a
local cluster.

The SQLite store is locked exclusively by whoever has it open (see
:class:`~rlm.quotas.store.QuotaStore`), so this process is its only writer while it holds it:
an engine or another command started meanwhile waits for the lock or is refused, never
interleaves writes. With PostgreSQL (``database_url``) the ledger is shared and each change
runs in its own transaction, as it does for every instance.

Which ledger a command talks to is decided in one place, :func:`quota_ledger`: the engine's
when a cluster is named or an engine runs on the state directory (one writer: the engine),
else this one.

Example:
    >>> with LocalQuotas("/tmp/state/quotas.db") as quotas:   # doctest: +SKIP
    ...     quotas("user_status", "alice").daily.agents_remaining
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

from rlm.config import Settings
from rlm.errors import InternalError
from rlm.quotas.service import QuotaLedgerService

__all__ = ["LocalQuotas", "QuotaCall", "quota_ledger"]

#: A quota ledger called as ``quotas(method, *args, **kwargs)``: ``Hypervisor.quotas`` or a
#: :class:`LocalQuotas`.
QuotaCall = Callable[..., Any]


@contextlib.contextmanager
def quota_ledger(
    address: str | None, settings: Settings, join: Callable[[], QuotaCall]
) -> Iterator[QuotaCall]:
    """The quota ledger a command should call, closed (if opened here) when the block ends.

    The engine's (``join()``, which imports and joins Ray) when ``address``,
    ``RLM_RAY_ADDRESS`` or ``RAY_ADDRESS`` names a cluster, or an engine runs on
    ``settings.state_dir``: it holds the store, and every change goes through it. Otherwise
    the state directory's ledger, opened in this process without Ray (:class:`LocalQuotas`).

    Args:
        address: The command's ``--address``, if given.
        settings: The settings in effect (state directory, database URL, Ray address).
        join: Joins (or starts) the engine and returns its ``quotas`` method.

    Raises:
        EngineUnavailable: No engine runs, but another process holds the quota store (the
            same refusal, exit code 3, as when joining: see
            :func:`rlm.runtime.discovery.store_in_use`).
    """
    # rlm.runtime.discovery reads the state file and /proc only: importing it loads no Ray.
    from rlm.runtime.discovery import resolve_address, store_in_use

    # The same choice connect() makes: a named cluster, else the registered engine, else a
    # refusal when another process holds the store; (None, None) leaves the store to us.
    ray_address, _ = resolve_address(address, settings)
    if ray_address is not None:
        yield join()
        return
    try:
        quotas = LocalQuotas(settings.state_dir / "quotas.db", database_url=settings.database_dsn)
    except InternalError:
        # Another process took the lock between the look above and the open: say which.
        refusal = store_in_use(settings)
        if refusal is not None:
            raise refusal from None
        raise
    with quotas:
        yield quotas


class LocalQuotas:
    """A :class:`~rlm.quotas.service.QuotaLedgerService` called as ``quotas(method, *args)``.

    Built exactly as the engine builds its ledger (``rlm.runtime.core``: the state
    directory's ``quotas.db``, default quota settings, ``database_url`` when set), so what a
    command changes here is what the next engine loads.

    Args:
        path: The ledger's SQLite file (``<state dir>/quotas.db``); unused with
            ``database_url``.
        database_url: A ``postgresql://`` URL holding the ledger instead.

    Raises:
        InternalError: The store cannot be opened (another process holds its lock past the
            store's busy timeout, or it was written by a newer schema).
    """

    def __init__(self, path: str | os.PathLike[str], *, database_url: str | None = None) -> None:
        self._service: QuotaLedgerService | None = QuotaLedgerService(
            path, database_url=database_url
        )

    def __call__(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call the ledger's ``method`` (see :data:`~rlm.quotas.service.READS` and
        :data:`~rlm.quotas.service.WRITES`); a write is persisted before this returns.

        Raises:
            RLMError: The ledger's refusal (unknown user, team or org, invalid change...).
            AttributeError: ``method`` is not one of the ledger's public methods.
            RuntimeError: The ledger was closed.
        """
        if self._service is None:
            raise RuntimeError("the local quota ledger is closed")
        return getattr(self._service, method)(*args, **kwargs)

    def close(self) -> None:
        """Close the store, releasing its lock (idempotent)."""
        service, self._service = self._service, None
        if service is not None:
            service.close()

    def __enter__(self) -> LocalQuotas:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
