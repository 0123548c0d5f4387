"""State-store benchmarks (issue #14): PostgreSQL against the embedded SQLite, same run.

- persisted admissions per second, batched: the quota ledger service applies 100 reserves in
  one call (one transaction; on PostgreSQL with the cross-instance row lock and catch-up),
  then their 100 reconciles — each admission is a reserve and its reconcile, both durable
  before the batch answers — on a SQLite file vs a PostgreSQL database;
- cost of one rate-limit check per request: the windows shared in PostgreSQL (one
  ``rlm_rate_take`` round trip per check; a task's admission looks, then counts: two) vs the
  embedded windows in memory with their SQLite journal, as the engine runs each;
- p50 latency of ``POST /v1/execute`` (a 10-item sum: JWT, rate limit, quota hold and
  reconcile, task record and events written) with ``RLM_DATABASE_URL`` vs without: two apps on
  one Serve, requests alternated between them so both see the same machine load.

PostgreSQL is a throwaway server on loopback (``rlm.testing.postgres``) with its default
durability (``fsync`` on; every commit flushed). SQLite runs as the service runs it (WAL,
``synchronous=NORMAL``; the quota ledger's journal is one ``write`` per call).
"""

from __future__ import annotations

import itertools
import socket
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from ray import serve

from benchmarks._report import figure
from benchmarks._session import bench_session
from rlm.auth import TierLimits
from rlm.auth.keys import load_signing_key
from rlm.auth.tokens import issue_token
from rlm.config import EngineSettings, ServerSettings, Settings
from rlm.db.connect import ensure_schema
from rlm.models.quotas import QuotaConfig
from rlm.quotas import QuotaLedgerService
from rlm.ratelimit import RateJournal, RateLimiter, SharedWindows
from rlm.testing.postgres import ThrowawayPostgres
from serve_app.deployment import build_app

__all__ = ["run"]

BODY = {
    "type": "recursive",
    "description": "10-item sum",
    "input": {"items": list(range(1, 11)), "operation": "sum"},
}

_BIG = 10**9


def _setup(service: QuotaLedgerService) -> None:
    service.create_org("corp", "", None, _BIG, 1e6, 0.0)
    service.create_org("eng", "", "corp", _BIG, 1e6, 0.0)
    service.create_team("research", "Research", _BIG, 1e6, 0.0)
    service.add_member("research", "bench")
    service.set_user_config(
        QuotaConfig(
            user_id="bench",
            daily_agent_limit=_BIG,
            weekly_agent_limit=_BIG,
            monthly_agent_limit=_BIG,
            daily_compute_hours=1e6,
            max_concurrent_agents=_BIG,
            max_storage_gb=1.0,
        )
    )


def _admissions_per_s(service: QuotaLedgerService, n: int, size: int = 100) -> float:
    kw = {"tier": "user", "team_id": "research", "org_id": "eng"}
    ids = [uuid.uuid4().hex for _ in range(n)]
    t0 = time.perf_counter()
    for k in range(0, n, size):
        held = service.batch(
            [("reserve", ("bench", 5), {**kw, "task_id": i}) for i in ids[k : k + size]]
        )
        service.batch([("reconcile", (r.reservation_id, 5, 0.0), {}) for r in held])
    return n / (time.perf_counter() - t0)


def _admission_figure(pg: ThrowawayPostgres, quick: bool) -> dict[str, Any]:
    n = 2_000 if quick else 10_000
    url = pg.database_url(f"bench_{uuid.uuid4().hex[:8]}")
    ensure_schema(url)
    with tempfile.TemporaryDirectory(prefix="rlm-bench-store-") as tmp:
        lite = QuotaLedgerService(Path(tmp) / "quotas.db")
        post = QuotaLedgerService(None, database_url=url)
        try:
            for service in (lite, post):
                _setup(service)
                _admissions_per_s(service, 500)  # warm-up
            # Alternate rounds so both see the same machine load; the median round counts.
            lite_rounds, pg_rounds = [], []
            for _ in range(3):
                lite_rounds.append(_admissions_per_s(lite, n // 3))
                pg_rounds.append(_admissions_per_s(post, n // 3))
        finally:
            lite.close()
            post.close()
    ours, base = statistics.median(pg_rounds), statistics.median(lite_rounds)
    return figure(
        "persisted admissions/s, batched (100 reserves then 100 reconciles per call): "
        "PostgreSQL vs SQLite",
        ours,
        base,
        unit="admissions/s",
        ratio=ours / base,
        goal=">= 0.5x",
        limit=">= 0.2x",
        baseline_name="the same service on the embedded SQLite store",
        rounds={
            "postgres": [round(r) for r in pg_rounds],
            "sqlite": [round(r) for r in lite_rounds],
        },
    )


def _rate_us(limiter: RateLimiter, n: int, *, look_first: bool) -> float:
    """Microseconds per admitted request (``look_first``: a task's admission, peek + count)."""
    keys = [f"user:bench-{i}" for i in range(64)]
    t0 = time.perf_counter()
    for i in range(n):
        key = keys[i % len(keys)]
        if look_first:
            limiter.peek(key, _OPEN)
        if not limiter.check_and_consume(key, _OPEN).allowed:
            raise RuntimeError("the benchmark's limits must admit every request")
    return (time.perf_counter() - t0) / n * 1e6


def _round_trip_us(url: str, n: int) -> float:
    """Microseconds of one ``SELECT 1`` on loopback: the floor any shared check pays."""
    from rlm.db.connect import connect

    with connect(url) as conn:
        conn.execute("SELECT 1").fetchone()
        t0 = time.perf_counter()
        for _ in range(n):
            conn.execute("SELECT 1").fetchone()
        return (time.perf_counter() - t0) / n * 1e6


#: Limits no benchmark run reaches: every check admits, so each one writes.
_OPEN = TierLimits(requests_per_minute=10**9, requests_per_hour=10**9, concurrent_agents=0)


def _rate_figures(pg: ThrowawayPostgres, quick: bool) -> list[dict[str, Any]]:
    n = 1_000 if quick else 5_000
    url = pg.database_url(f"bench_{uuid.uuid4().hex[:8]}")
    ensure_schema(url)
    with tempfile.TemporaryDirectory(prefix="rlm-bench-rate-") as tmp:
        journal = RateJournal(Path(tmp) / "state.db")
        shared = SharedWindows(url)
        local, post = RateLimiter(journal=journal), RateLimiter(shared=shared)
        try:
            rows = []
            for look_first, what in ((False, "a request"), (True, "a task's admission")):
                for limiter in (local, post):
                    _rate_us(limiter, 200, look_first=look_first)  # warm-up
                # Alternate rounds so both see the same machine load; the median round counts.
                lite_rounds, pg_rounds, trips = [], [], []
                for _ in range(3):
                    lite_rounds.append(_rate_us(local, n // 3, look_first=look_first))
                    pg_rounds.append(_rate_us(post, n // 3, look_first=look_first))
                    trips.append(_round_trip_us(url, n // 3))
                ours, base = statistics.median(pg_rounds), statistics.median(lite_rounds)
                checks = "peek + count" if look_first else "one count"
                rows.append(
                    figure(
                        f"rate-limit cost per counted request ({what}: {checks}): windows "
                        "shared in PostgreSQL vs in memory + SQLite journal",
                        ours,
                        base,
                        unit="us/request",
                        ratio=ours / base,
                        goal="none (issue #14 asks for the cost, reported)",
                        limit="none",
                        baseline_name="the embedded limiter (memory, journal in SQLite)",
                        extra_us=round(ours - base, 1),
                        select1_round_trip_us=round(statistics.median(trips), 1),
                        rounds={
                            "postgres": [round(r, 1) for r in pg_rounds],
                            "sqlite": [round(r, 1) for r in lite_rounds],
                        },
                    )
                )
            return rows
        finally:
            journal.close()
            shared.close()


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


def _execute_figure(pg: ThrowawayPostgres, state: Path, quick: bool) -> dict[str, Any]:
    port = _port()
    url = pg.database_url(f"bench_{uuid.uuid4().hex[:8]}")
    ensure_schema(url)
    secret = SecretStr("state-store-bench-secret-" + "x" * 16)
    common = {
        "engine": EngineSettings(agents=2),
        "server": ServerSettings(port=port, min_replicas=1, max_replicas=1),
    }
    lite = Settings(state_dir=state / "sqlite", **common)  # type: ignore[arg-type]
    post = Settings(
        state_dir=state / "postgres",
        database_url=SecretStr(url),
        **common,  # type: ignore[arg-type]
    )
    lite = lite.model_copy(update={"auth": lite.auth.model_copy(update={"secret": secret})})
    post = post.model_copy(update={"auth": post.auth.model_copy(update={"secret": secret})})
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        serve.run(build_app(lite), name="rlm-sqlite", route_prefix="/sqlite", blocking=False)
        serve.run(build_app(post), name="rlm-postgres", route_prefix="/postgres", blocking=False)
        key = load_signing_key(lite.auth, lite.state_dir, lite.env)
        auth = [
            {
                "Authorization": "Bearer "
                + issue_token(
                    f"bench-{i}", ["rlm:execute"], "enterprise", settings=lite.auth, key=key
                )
            }
            for i in range(64)
        ]
        urls = {
            name: f"http://127.0.0.1:{port}/{name}/v1/execute" for name in ("sqlite", "postgres")
        }
        deadline = time.monotonic() + 180
        for target in urls.values():
            while True:
                try:
                    httpx.post(target, json=BODY, headers=auth[0], timeout=10).raise_for_status()
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
        n = 100 if quick else 400
        samples: dict[str, list[float]] = {"sqlite": [], "postgres": []}
        headers = itertools.cycle(auth)
        with httpx.Client(
            timeout=60, transport=httpx.HTTPTransport(socket_options=_NODELAY)
        ) as client:
            for _ in range(20):  # warm-up
                for target in urls.values():
                    client.post(target, json=BODY, headers=next(headers)).raise_for_status()
            for _ in range(n):
                for name, target in urls.items():
                    t0 = time.perf_counter()
                    client.post(target, json=BODY, headers=next(headers)).raise_for_status()
                    samples[name].append(time.perf_counter() - t0)
    finally:
        serve.shutdown()
    ours, base = statistics.median(samples["postgres"]), statistics.median(samples["sqlite"])
    return figure(
        "p50 latency of POST /v1/execute (10-item sum): RLM_DATABASE_URL (PostgreSQL) vs SQLite",
        ours * 1000,
        base * 1000,
        unit="ms",
        ratio=ours / base,
        goal="<= 1.2x",
        limit="1.5x",
        baseline_name="the same service on the embedded SQLite state",
    )


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Run the state-store figures."""
    with ThrowawayPostgres(durable=True) as pg:
        rows = [_admission_figure(pg, quick), *_rate_figures(pg, quick)]
        with bench_session("rlm-bench-state-") as state:
            rows.append(_execute_figure(pg, state, quick))
    return rows


if __name__ == "__main__":
    run()
