"""Quota benchmarks (issue 4): admissions through the engine's accountant vs raw actor calls.

An admission is a reserve (user windows, team pool, the org and its ancestors) and its
reconcile, each persisted before it answers. They are measured three ways:

- through the accountant actor in batches (``quota_batch``: many reserves in one call and one
  commit, then their reconciles) — how a front end that gathers admissions uses it;
- through the accountant actor one call each (two calls per admission; report only);
- inside the accountant's process (what an execute pays: its admission rides inside the
  execute call, so it costs no actor call of its own).

The baseline is raw calls to a trivial async actor in the same run, submitted the same way
(all at once, then gathered).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import ray

import rlm
from benchmarks._report import figure
from benchmarks._session import bench_session
from rlm.config import EngineSettings, Settings
from rlm.models.quotas import QuotaConfig
from rlm.quotas.records import Settlement
from rlm.quotas.wire import unpack_slot

__all__ = ["batched_admissions", "run", "setup_tenants"]


@ray.remote(num_cpus=0)
class _Trivial:
    async def noop(self, *args: Any) -> int:
        return 0


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Run the quota figures."""
    with bench_session("rlm-bench-quota-") as state:
        return _figures(state, quick)


#: The payer chain every admission here charges: user ``bench`` in team ``research`` of org
#: ``eng`` under ``corp``.
_CHAIN = {"tier": "user", "team_id": "research", "org_id": "eng"}


def setup_tenants(hv: rlm.Hypervisor) -> None:
    """Create the org chain, the team and the user the admissions charge (limits no run hits)."""
    hv.quotas("create_org", "corp", "", None, 10**9, 10**6, 0.0)
    hv.quotas("create_org", "eng", "", "corp", 10**9, 10**6, 0.0)
    hv.quotas("create_team", "research", "Research", 10**9, 10**6, 0.0)
    hv.quotas("add_member", "research", "bench")
    big = 10**9
    hv.quotas(
        "set_user_config",
        QuotaConfig(
            user_id="bench",
            daily_agent_limit=big,
            weekly_agent_limit=big,
            monthly_agent_limit=big,
            daily_compute_hours=10**6,
            max_concurrent_agents=big,
            max_storage_gb=1.0,
        ),
    )


def batched_admissions(core: Any, n: int, size: int) -> list[Settlement]:
    """Admit ``n`` tasks through the core's accountant in batches of ``size`` reserves, then
    reconcile them in batches of the same size; return the settlements, read back as the
    caller would (``Hypervisor.quota_batch``: its CPU counts too)."""
    ids = [uuid.uuid4().hex for _ in range(n)]
    held = ray.get(
        [
            core.quota_batch.remote(
                [("reserve", ("bench", 5), {**_CHAIN, "task_id": i}) for i in chunk]
            )
            for chunk in (ids[k : k + size] for k in range(0, n, size))
        ]
    )
    settled = ray.get(
        [
            core.quota_batch.remote(
                [
                    ("reconcile", (unpack_slot(slot).reservation_id, 4, 0.001), {})
                    for slot in answer[1]
                ]
            )
            for answer in held
        ]
    )
    done = [unpack_slot(slot) for answer in settled for slot in answer[1]]
    assert all(isinstance(s, Settlement) for s in done)
    return done


def _figures(state: Path, quick: bool) -> list[dict[str, Any]]:
    hv = rlm.connect(settings=Settings(state_dir=state, engine=EngineSettings(agents=1)))
    core = hv._core  # the accountant lives in the engine's core actor
    n = 2_000 if quick else 10_000
    rows = []
    try:
        setup_tenants(hv)

        def batched(size: int = 100) -> float:
            t0 = time.perf_counter()
            batched_admissions(core, n, size)
            return n / (time.perf_counter() - t0)

        def admissions() -> float:
            ids = [uuid.uuid4().hex for _ in range(n)]
            t0 = time.perf_counter()
            reserved = ray.get(
                [
                    core.quota.remote(
                        "reserve",
                        ("bench", 5),
                        {"tier": "user", "task_id": i, "team_id": "research", "org_id": "eng"},
                        None,
                    )
                    for i in ids
                ]
            )
            ray.get(
                [
                    core.quota.remote("reconcile", (r[1].reservation_id, 4, 0.001), {}, None)
                    for r in reserved
                ]
            )
            return n / (time.perf_counter() - t0)

        trivial = _Trivial.remote()
        ray.get(trivial.noop.remote())

        def raw_calls() -> float:
            t0 = time.perf_counter()
            ray.get([trivial.noop.remote("x", (1,), {}) for _ in range(2 * n)])
            return 2 * n / (time.perf_counter() - t0)

        def in_process() -> float:
            # What each execute pays: the accountant's own work, persisted, in its process.
            from rlm.quotas.service import QuotaLedgerService

            ledger = QuotaLedgerService(state / f"inproc-{uuid.uuid4().hex}.db")
            ledger.create_org("corp", "", None, 10**9, 10**6, 0.0)
            ledger.create_org("eng", "", "corp", 10**9, 10**6, 0.0)
            ledger.create_team("research", "Research", 10**9, 10**6, 0.0)
            ledger.add_member("research", "bench")
            ledger.set_user_config(hv.quotas("user_config", "bench"))
            t0 = time.perf_counter()
            for _ in range(n):
                held = ledger.reserve(
                    "bench",
                    5,
                    tier="user",
                    task_id=uuid.uuid4().hex,
                    team_id="research",
                    org_id="eng",
                )
                ledger.reconcile(held.reservation_id, 4, 0.001)
            rate = n / (time.perf_counter() - t0)
            ledger.close()
            return rate

        admissions()
        batched()
        raw_calls()
        local = sorted(in_process() for _ in range(3))[1]
        rows.append(
            figure(
                "admissions per second inside the accountant (reserve + reconcile, persisted)",
                local,
                5000.0,
                unit="admissions/s",
                ratio=local / 5000.0,
                goal=">= 5000/s",
                limit=">= 1000/s",
                baseline_name="the goal (5,000/s)",
            )
        )
        ours = sorted(batched() for _ in range(3))[1]
        single = sorted(admissions() for _ in range(3))[1]
        base = sorted(raw_calls() for _ in range(3))[1]
        status = hv.quotas("user_status", "bench")
        assert status.current_concurrent_agents == 0  # every lease was given back
        rows.append(
            figure(
                "admissions per second through the accountant actor (batches of 100)",
                ours,
                5000.0,
                unit="admissions/s",
                ratio=ours / 5000.0,
                # Issue 18: persisted admissions/s through the accountant.
                goal=">= 20000/s",
                limit=">= 5000/s",
                baseline_name="the first goal (5,000/s)",
            )
        )
        rows.append(
            figure(
                "batched admissions per second vs raw calls per second to a trivial actor",
                ours,
                base,
                unit="per s",
                ratio=ours / base,
                goal=">= 0.5x",
                limit=">= 0.25x",
                baseline_name="trivial async actor, one call per submission",
            )
        )
        rows.append(
            figure(
                "admissions per second, one actor call per reserve and per reconcile",
                single,
                base,
                unit="admissions/s",
                ratio=single / base,
                goal="report",
                limit="report",
                baseline_name="trivial async actor, one call per submission",
            )
        )
    finally:
        hv.shutdown_engine()
    return rows


if __name__ == "__main__":
    run()
