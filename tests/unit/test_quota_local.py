"""Which quota ledger an admin command talks to (rlm.quotas.local), on real SQLite files.

``join`` stands for joining the engine over Ray (the unit suite never starts Ray): it records
that it was asked and returns a callable the test can recognise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rlm.config import Settings
from rlm.errors import InternalError, RLMError
from rlm.models.quotas import QuotaConfig
from rlm.quotas.local import LocalQuotas, quota_ledger
from rlm.quotas.store import QuotaStore
from rlm.tasks.store import TaskStore

ALICE = QuotaConfig(
    user_id="alice",
    daily_agent_limit=123,
    weekly_agent_limit=500,
    monthly_agent_limit=900,
    daily_compute_hours=2.0,
    max_concurrent_agents=3,
    max_storage_gb=1.0,
)


class Join:
    """Records each join and answers with the engine's (stand-in) ``quotas`` method."""

    def __init__(self) -> None:
        self.calls = 0

    def engine_quotas(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return ("engine", method, args)

    def __call__(self) -> Any:
        self.calls += 1
        return self.engine_quotas


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in ("RAY_ADDRESS", "RLM_RAY_ADDRESS", "RLM_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    return Settings(state_dir=tmp_path / "state")


def _store_is_locked(path: Path) -> bool:
    try:
        QuotaStore(path, busy_timeout_ms=0).close()
    except InternalError:
        return True
    return False


def test_without_an_engine_the_ledger_is_opened_here_and_closed_after(settings: Settings) -> None:
    join = Join()
    path = settings.state_dir / "quotas.db"
    with quota_ledger(None, settings, join) as quotas:
        assert isinstance(quotas, LocalQuotas)
        quotas("set_user_config", ALICE, tier="power_user")
        assert quotas("user_status", "alice").daily.agents_limit == 123
        assert _store_is_locked(path)  # one writer while the command runs
    assert join.calls == 0
    assert not _store_is_locked(path)
    # What the command wrote is what the next opener (an engine, another command) loads.
    with LocalQuotas(path) as again:
        assert again("user_config", "alice") == ALICE
    with pytest.raises(RuntimeError, match="closed"):
        quotas("user_status", "alice")


def test_a_refusal_of_the_ledger_still_closes_it(settings: Settings) -> None:
    path = settings.state_dir / "quotas.db"
    with pytest.raises(RLMError), quota_ledger(None, settings, Join()) as quotas:
        quotas("team_status", "no-such-team")
    assert not _store_is_locked(path)


@pytest.mark.parametrize("how", ["--address", "RLM_RAY_ADDRESS", "RAY_ADDRESS"])
def test_a_named_cluster_is_joined(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    address = None
    if how == "--address":
        address = "10.0.0.1:6379"
    elif how == "RLM_RAY_ADDRESS":
        settings = settings.model_copy(update={"ray_address": "10.0.0.1:6379"})
    else:
        monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    join = Join()
    with quota_ledger(address, settings, join) as quotas:
        assert quotas("user_status", "alice") == ("engine", "user_status", ("alice",))
    assert join.calls == 1
    assert not (settings.state_dir / "quotas.db").exists()  # nothing opened here


def test_a_running_engine_on_the_state_directory_is_joined(settings: Settings) -> None:
    settings.state_dir.mkdir(parents=True)
    store = TaskStore(settings.database_path)
    try:
        store.register_instance("engine-1", ray_address="127.0.0.1:6379")  # this live process
        join = Join()
        with quota_ledger(None, settings, join) as quotas:
            assert quotas("user_status", "alice")[0] == "engine"
        assert join.calls == 1
        assert not (settings.state_dir / "quotas.db").exists()
    finally:
        store.close()


def test_an_engine_without_a_ray_address_is_not_joined(settings: Settings) -> None:
    # Registered but not joinable (no address recorded): the command opens the ledger itself.
    settings.state_dir.mkdir(parents=True)
    store = TaskStore(settings.database_path)
    try:
        store.register_instance("engine-1")
        join = Join()
        with quota_ledger(None, settings, join) as quotas:
            assert isinstance(quotas, LocalQuotas)
        assert join.calls == 0
    finally:
        store.close()


def test_with_postgresql_the_shared_ledger_is_used_here(
    settings: Settings, postgres_url: str
) -> None:
    # A database is shared by every instance, not held by one: the command changes it in its
    # own transactions, and an engine's ledger on the same database sees the change.
    from rlm.db.connect import ensure_schema
    from rlm.quotas import QuotaLedgerService

    ensure_schema(postgres_url)
    on_db = Settings(state_dir=settings.state_dir, database_url=postgres_url)
    assert on_db.database_dsn == postgres_url
    engine_ledger = QuotaLedgerService(None, database_url=postgres_url)
    try:
        join = Join()
        with quota_ledger(None, on_db, join) as quotas:
            assert isinstance(quotas, LocalQuotas)
            quotas("set_user_config", ALICE)
        assert join.calls == 0
        assert engine_ledger.user_status("alice").daily.agents_limit == 123
    finally:
        engine_ledger.close()
    assert not (settings.state_dir / "quotas.db").exists()
