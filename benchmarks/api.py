"""HTTP API benchmarks (issue 3), each against a bare Serve endpoint in the same run.

- p50 latency of ``POST /v1/execute`` (a 10-item sum, JWT checked, rate limit counted, task
  recorded) vs a bare Serve + FastAPI endpoint that sums the same items;
- requests per second at 16 concurrent clients, the same two endpoints.

The rate limits of the API document stay on: requests rotate over 64 enterprise users so the
per-user limits (600/min) are not what is measured.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from ray import serve

from benchmarks._report import figure
from benchmarks._session import bench_session
from rlm.auth.keys import load_signing_key
from rlm.auth.tokens import issue_token
from rlm.config import EngineSettings, ServerSettings, Settings
from serve_app.deployment import build_app

__all__ = ["run"]

bare = FastAPI()


@bare.post("/sum")
async def _sum(body: dict[str, Any]) -> dict[str, Any]:
    return {"output": sum(body["input"]["items"])}


@serve.deployment(name="bare", ray_actor_options={"num_cpus": 0}, max_ongoing_requests=256)
@serve.ingress(bare)
class Bare:
    """The baseline: Serve + FastAPI, no auth, no engine."""


BODY = {
    "type": "recursive",
    "description": "10-item sum",
    "input": {"items": list(range(1, 11)), "operation": "sum"},
}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: Nagle's algorithm plus delayed ACKs would add ~40 ms to every POST (head and body are two
#: writes); real clients set TCP_NODELAY, and so do both sides here.
_NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


def _p50(client: httpx.Client, url: str, headers: Any, n: int) -> float:
    for _ in range(20):
        client.post(url, json=BODY, headers=next(headers)).raise_for_status()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        client.post(url, json=BODY, headers=next(headers)).raise_for_status()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


async def _rps(url: str, headers: list[dict[str, str]], seconds: float) -> float:
    done = 0
    stop = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
    transport = httpx.AsyncHTTPTransport(limits=limits, socket_options=_NODELAY)
    async with httpx.AsyncClient(timeout=60, transport=transport) as client:

        async def worker(i: int) -> None:
            nonlocal done
            k = i
            while time.perf_counter() < stop:
                response = await client.post(url, json=BODY, headers=headers[k % len(headers)])
                response.raise_for_status()
                done += 1
                k += 16

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(16)))
        return done / (time.perf_counter() - t0)


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Run the API figures."""
    with bench_session("rlm-bench-api-") as state:
        return _figures(state, quick)


def _figures(state: Path, quick: bool) -> list[dict[str, Any]]:
    rows = []
    port = _port()
    settings = Settings(
        state_dir=state,
        engine=EngineSettings(agents=2),
        server=ServerSettings(port=port, min_replicas=1, max_replicas=1),
    )
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        serve.run(build_app(settings), name="rlm", route_prefix="/", blocking=False)
        serve.run(Bare.bind(), name="bare", route_prefix="/bare", blocking=False)
        key = load_signing_key(settings.auth, settings.state_dir, settings.env)
        tokens = [
            issue_token(
                f"bench-{i}", ["rlm:execute"], "enterprise", settings=settings.auth, key=key
            )
            for i in range(64)
        ]
        auth = [{"Authorization": f"Bearer {t}"} for t in tokens]
        ours_url = f"http://127.0.0.1:{port}/v1/execute"
        bare_url = f"http://127.0.0.1:{port}/bare/sum"
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.post(ours_url, json=BODY, headers=auth[0], timeout=10).raise_for_status()
                httpx.post(bare_url, json=BODY, timeout=10).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        n = 100 if quick else 400
        with httpx.Client(
            timeout=60, transport=httpx.HTTPTransport(socket_options=_NODELAY)
        ) as client:
            ours = _p50(client, ours_url, itertools.cycle(auth), n)
            base = _p50(client, bare_url, itertools.cycle([{}]), n)
        rows.append(
            figure(
                "p50 latency of POST /v1/execute (10-item sum) vs a bare Serve endpoint",
                ours * 1000,
                base * 1000,
                unit="ms",
                ratio=ours / base,
                goal="<= 1.3x",
                limit="2x",
                baseline_name="Serve + FastAPI endpoint summing the items",
            )
        )
        seconds = 4.0 if quick else 10.0
        rps_ours = asyncio.run(_rps(ours_url, auth, seconds))
        rps_base = asyncio.run(_rps(bare_url, [{}], seconds))
        rows.append(
            figure(
                "requests/s at 16 concurrent clients vs the bare Serve endpoint",
                rps_ours,
                rps_base,
                unit="req/s",
                ratio=rps_ours / rps_base,
                goal=">= 0.8x",
                limit=">= 0.5x",
                baseline_name="Serve + FastAPI endpoint summing the items",
            )
        )
    finally:
        serve.shutdown()
    return rows


if __name__ == "__main__":
    run()
