"""LM agent benchmarks (issue 9), each against a baseline measured in the same run.

``FakeLMServer`` (an OpenAI-compatible server of our own on loopback) stands in for a paid LM
API: this machine reaches none, and a paid API's latency and rate limits would not be ours to
set. It speaks the real protocol to the real ``openai`` client, waits a set latency per
completion, and records what it receives, so the figures are measured at the server. The
latency figures use a server in a process of its own (in the benchmark's process it would
share a GIL with the driver and slow both); the rate figure reads an in-process server's
arrival log.

- one ``llm_map`` call (1 item, memo off) p50 through ``Hypervisor.execute`` vs a raw
  ``openai.AsyncOpenAI`` chat completion to the same server (100 ms latency);
- one ``llm_map`` over 256 items (``leafSize`` 1, provider ``max_concurrency`` 64, 100 ms
  latency): wall time vs the ideal 4 x latency, and beside it a raw ``AsyncOpenAI`` client
  sending the same 256 requests 64 at a time (what the client library itself costs);
- LM sub-call scheduling overhead per call at 1,000 in flight: one ``llm_map`` over 1,000
  items to a provider with no latency and ``max_concurrency`` 1,000, against the same 1,000
  requests sent at once by the HTTP client the gateways use (``rlm.lm.chat_http.ChatClient``)
  to the same server; the difference per call is what admission, planning, the broker's
  queue, the gateway shards and accounting add;
- a provider limited to 600 requests per minute, offered ~700 calls in a 30 s window (10 s
  with ``--quick``): the most requests the server accepted in any 60 s, vs the limit.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from pathlib import Path
from typing import Any

import openai

import rlm
from benchmarks._report import figure
from benchmarks._session import bench_session, lm_server_process
from rlm.config import EngineSettings, Settings
from rlm.lm.chat_http import ChatClient
from rlm.lm.settings import LMSettings
from rlm.testing import FakeLMServer

__all__ = ["run"]

_KEY_ENV = "RLM_BENCH_LM_KEY"
_RPM = 600
_IN_FLIGHT = 1000


def _map(items: list[str], **params: Any) -> dict[str, Any]:
    return {
        "type": "parallel",
        "description": "llm_map bench",
        "input": {
            "items": items,
            "operation": "llm_map",
            "params": {"prompt": "Q {chunk}", **params},
        },
        "options": {"leafSize": 1, "memo": False},
    }


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Run the LM figures; ``quick`` shrinks repetitions and the rate window."""
    with (
        FakeLMServer(latency_s=0.01) as server,
        lm_server_process(100) as apart,
        lm_server_process(0) as instant,
        bench_session("rlm-bench-lm-") as state,
    ):
        return _figures(server, apart, instant, state, quick)


def _figures(
    server: FakeLMServer, apart: str, instant: str, state: Path, quick: bool
) -> list[dict[str, Any]]:
    config = state / "providers.yaml"
    config.write_text(
        "providers:\n"
        f"  - {{name: paced, baseUrl: '{server.url}', apiKeyEnv: {_KEY_ENV},"
        f" model: fake-model, requestsPerMinute: {_RPM}, maxConcurrency: 64}}\n"
        f"  - {{name: instant, baseUrl: '{instant}', apiKeyEnv: {_KEY_ENV},"
        f" model: fake-model, maxConcurrency: {_IN_FLIGHT}}}\n"
    )
    os.environ[_KEY_ENV] = "test-key"
    settings = Settings(
        state_dir=state,
        engine=EngineSettings(agents=2),
        lm=LMSettings(
            base_url=apart,
            api_key="test-key",  # type: ignore[arg-type]
            model="fake-model",
            max_concurrency=64,
            config=config,
        ),
    )
    hv = rlm.connect(settings=settings)
    rows = []
    try:
        rows.append(_single_p50(hv, apart, quick))
        rows.append(_fanout_256(hv, apart, quick))
        rows.append(_overhead_in_flight(hv, instant, quick))
        rows.append(_rpm_held(hv, server, quick))
    finally:
        hv.shutdown_engine()
    return rows


def _single_p50(hv: rlm.Hypervisor, url: str, quick: bool) -> dict[str, Any]:
    n = 10 if quick else 30
    counter = iter(range(10**9))

    def ours_once() -> float:
        t0 = time.perf_counter()
        out = hv.execute(_map([f"single {next(counter)}"]))
        elapsed = time.perf_counter() - t0
        assert out.status == "completed", out.error
        return elapsed

    for _ in range(3):
        ours_once()
    ours = statistics.median(ours_once() for _ in range(n))

    async def raw() -> float:
        client = openai.AsyncOpenAI(base_url=url, api_key="test-key", max_retries=0)
        try:
            samples = []
            for i in range(n + 3):
                t0 = time.perf_counter()
                await client.chat.completions.create(
                    model="fake-model", messages=[{"role": "user", "content": f"Q raw {i}"}]
                )
                samples.append(time.perf_counter() - t0)
            return statistics.median(samples[3:])
        finally:
            await client.close()

    base = asyncio.run(raw())
    return figure(
        "lm_map_single_p50",
        ours * 1000,
        base * 1000,
        unit="ms",
        ratio=ours / base,
        goal="<= 1.05x",
        limit="1.2x",
        baseline_name="raw openai.AsyncOpenAI chat completion, same server (100 ms latency)",
        runs=n,
    )


def _fanout_256(hv: rlm.Hypervisor, url: str, quick: bool) -> dict[str, Any]:
    latency = 0.1
    reps = 2 if quick else 5
    walls = []
    for rep in range(reps + 1):
        t0 = time.perf_counter()
        out = hv.execute(_map([f"fan {rep} {i}" for i in range(256)]))
        wall = time.perf_counter() - t0
        assert out.status == "completed", out.error
        assert out.usage is not None and out.usage.lm_calls == 256
        if rep:  # the first run is a warm-up
            walls.append(wall)
    ours = statistics.median(walls)

    async def raw(rep: int) -> float:
        client = openai.AsyncOpenAI(base_url=url, api_key="test-key", max_retries=0)
        slots = asyncio.Semaphore(64)

        async def one(i: int) -> None:
            async with slots:
                await client.chat.completions.create(
                    model="fake-model", messages=[{"role": "user", "content": f"Q raw {rep} {i}"}]
                )

        try:
            await one(-1)
            t0 = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(256)))
            return time.perf_counter() - t0
        finally:
            await client.close()

    raw_wall = statistics.median(asyncio.run(raw(rep)) for rep in range(reps))
    ideal = 4 * latency
    return figure(
        "lm_map_256_chunks",
        ours,
        ideal,
        unit="s",
        ratio=ours / ideal,
        goal="<= 1.1x",
        limit="1.5x",
        baseline_name="ideal: 256 calls / 64 concurrent x 100 ms latency",
        runs=reps,
        wallsS=[round(w, 4) for w in walls],
        rawClientWallS=round(raw_wall, 4),
        ratioVsRawClient=round(ours / raw_wall, 3),
    )


def _overhead_in_flight(hv: rlm.Hypervisor, url: str, quick: bool) -> dict[str, Any]:
    n = _IN_FLIGHT
    reps = 2 if quick else int(os.environ.get("RLM_BENCH_REPS", "7"))

    def ours(rep: int) -> float:
        items = [f"now {rep} {i}" for i in range(n)]
        t0 = time.perf_counter()
        out = hv.execute(_map(items, provider="instant"))
        wall = time.perf_counter() - t0
        assert out.status == "completed", out.error
        assert out.usage is not None and out.usage.lm_calls == n
        return wall

    async def bare(rep: int) -> float:
        client = ChatClient(url, "test-key", timeout_s=60, max_connections=n)

        def body(i: int) -> dict[str, Any]:
            return {
                "model": "fake-model",
                "messages": [{"role": "user", "content": f"Q {rep} {i}"}],
            }

        try:
            await client.create(body(-1))
            t0 = time.perf_counter()
            await asyncio.gather(*(client.create(body(i)) for i in range(n)))
            return time.perf_counter() - t0
        finally:
            await client.close()

    ours(-1)  # warm-up: workers, gateway shards, connections
    walls, bare_walls = [], []
    for rep in range(reps):  # alternated, so a change of the machine's load hits both
        walls.append(ours(rep))
        bare_walls.append(asyncio.run(bare(rep)))
    per_call_ms = (
        statistics.median(w - b for w, b in zip(walls, bare_walls, strict=True)) / n * 1000
    )
    return figure(
        "lm_overhead_per_call_1000_in_flight",
        per_call_ms,
        statistics.median(bare_walls) / n * 1000,
        unit="ms",
        ratio=statistics.median(walls) / statistics.median(bare_walls),
        goal="<= 0.2 ms",
        limit="1 ms",
        baseline_name="the gateways' HTTP client alone, the same 1,000 requests at once (per call)",
        runs=reps,
        wallsS=[round(w, 4) for w in walls],
        clientWallsS=[round(w, 4) for w in bare_walls],
    )


def _rpm_held(hv: rlm.Hypervisor, server: FakeLMServer, quick: bool) -> dict[str, Any]:
    window = 10.0 if quick else 30.0
    total, per_task = 700, 50
    server.reset_stats()
    t0 = time.monotonic()
    ids = [
        hv.submit(_map([f"paced {t} {i}" for i in range(per_task)], provider="paced"))
        for t in range(total // per_task)
    ]
    time.sleep(max(0.0, window - (time.monotonic() - t0)))
    cancelled = 0
    for task_id in ids:
        if hv.status(task_id).status not in ("completed", "failed", "cancelled"):
            hv.cancel(task_id)
            cancelled += 1
    stats = server.stats()
    accepted = stats.accepted_arrivals
    in_60 = stats.max_accepted_in_window(60)
    in_window = stats.max_accepted_in_window(window)
    return figure(
        "lm_rpm_held",
        in_60,
        _RPM,
        unit="requests / 60 s",
        ratio=in_60 / _RPM,
        goal="<= 1.0",
        limit="<= 1.0",
        baseline_name="provider requestsPerMinute limit",
        windowS=window,
        offered=total,
        acceptedInWindow=in_window,
        acceptedTotal=stats.ok,
        requestsTotal=stats.requests,
        tasksCancelled=cancelled,
        firstToLastAcceptedS=round(accepted[-1] - accepted[0], 3) if accepted else 0.0,
    )


if __name__ == "__main__":
    run()
