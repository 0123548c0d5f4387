"""Webhook benchmarks (issue 12), against a fast receiver on loopback in a process of its own
(:mod:`rlm.testing.webhook_receiver`), each figure beside a baseline measured in the same run:

- ``webhook_execute_p50``: p50 of ``Hypervisor.execute`` (a 10-item sum) for a user with three
  webhooks subscribed to ``task.completed`` vs a user with none (blocks of 25 of each,
  interleaved; the median of the per-block-pair ratios is reported too, with the load average);
- ``webhook_http_execute_p50``: the same over the API — ``POST /v1/execute`` on Ray Serve, users
  of an org with three org-wide webhooks vs users of none;
- ``webhook_end_to_delivery_p50``: from a task's end (its ``completedAt``) to the delivery's
  arrival at the receiver, p50 over those same tasks' deliveries; baseline: one bare aiohttp
  POST from this process to the same receiver;
- ``webhook_deliveries_per_s``: twenty webhooks on one user, tasks submitted at once: deliveries
  per second from the first arrival to the last; baseline: bare aiohttp POSTs per second from
  one process, 64 in flight, to the same receiver.

The receiver stands in for a service on another machine; here it shares the engine's two
cores, so it runs at the priority Ray gives the engine's actors (nice 15), neither ahead of the
engine nor behind it (``RLM_BENCH_RECEIVER_NICE`` overrides: 0 gives it the driver's).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from ray import serve

import rlm
from benchmarks._report import figure
from benchmarks._session import bench_session
from rlm.admission import Viewer
from rlm.auth.keys import load_signing_key
from rlm.auth.tokens import issue_token
from rlm.config import EngineSettings, ServerSettings, Settings
from rlm.models import WebhookCreate
from rlm.webhooks.settings import WebhookSettings
from serve_app.deployment import build_app

__all__ = ["run"]

SUM = {
    "type": "recursive",
    "description": "10-item sum",
    "input": {"items": list(range(10)), "operation": "sum"},
}


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Run the webhook figures."""
    with bench_session("rlm-bench-hooks-") as state:
        nice = int(os.environ.get("RLM_BENCH_RECEIVER_NICE", "15"))
        receiver = subprocess.Popen(
            ["nice", "-n", str(nice), sys.executable, "-m", "rlm.testing.webhook_receiver"],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert receiver.stdout is not None
            url = receiver.stdout.readline().strip()
            return _figures(state, url, quick)
        finally:
            receiver.terminate()
            receiver.wait(10)


def _received(url: str, after: int = 0) -> list[dict[str, Any]]:
    base = url.rsplit("/", 1)[0]
    with urllib.request.urlopen(f"{base}/_received?after={after}", timeout=30) as response:
        hits: list[dict[str, Any]] = json.loads(response.read())
    return hits


def _wait_count(url: str, count: int, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        hits = _received(url)
        if len(hits) >= count or time.monotonic() > deadline:
            return hits
        time.sleep(0.05)


def _figures(state: Path, url: str, quick: bool) -> list[dict[str, Any]]:
    settings = Settings(
        state_dir=state,
        engine=EngineSettings(agents=2),
        webhooks=WebhookSettings(allow_http=True, allow_loopback=True),
    )
    hv = rlm.connect(settings=settings)
    rows = []
    try:
        hooked, plain = Viewer("bench-hooks"), Viewer("bench-none")
        for _ in range(3):
            hv.webhooks("create", hooked, WebhookCreate(url=url, events=["task.completed"]))
        for _ in range(30):  # warm both paths (agents, the worker's connections)
            hv.execute(SUM, owner_id=plain.user_id)
            hv.execute(SUM, owner_id=hooked.user_id)
        _wait_count(url, 90, 60)
        skip = len(_received(url))
        # Short blocks of each, interleaved, so drifting load on a shared machine hits both.
        blocks, size = (8, 25) if quick else (24, 25)
        with_hooks: list[float] = []
        without: list[float] = []
        pairs: list[float] = []
        hooked_tasks: list[str] = []
        load = os.getloadavg()[0]
        for _ in range(blocks):
            block: dict[str, list[float]] = {plain.user_id: [], hooked.user_id: []}
            for owner in (plain, hooked):
                for _ in range(size):
                    t0 = time.perf_counter()
                    result = hv.execute(SUM, owner_id=owner.user_id)
                    block[owner.user_id].append(time.perf_counter() - t0)
                    if owner is hooked:
                        hooked_tasks.append(result.task_id)
            without += block[plain.user_id]
            with_hooks += block[hooked.user_id]
            pairs.append(
                statistics.median(block[hooked.user_id]) / statistics.median(block[plain.user_id])
            )
        ours, base = statistics.median(with_hooks), statistics.median(without)
        rows.append(
            figure(
                "webhook_execute_p50",
                ours * 1000,
                base * 1000,
                unit="ms",
                ratio=ours / base,
                goal="<= 1.05x",
                limit="1.2x",
                baseline_name="Hypervisor.execute p50 of a user with no webhook",
                runs=len(with_hooks),
                receiverNice=int(os.environ.get("RLM_BENCH_RECEIVER_NICE", "15")),
                blockPairRatioMedian=round(statistics.median(pairs), 3),
                blockPairRatioRange=[round(min(pairs), 3), round(max(pairs), 3)],
                loadavg1m=[round(load, 1), round(os.getloadavg()[0], 1)],
            )
        )
        hits = _wait_count(url, skip + 3 * len(hooked_tasks), 120)[skip:]
        ended = {t: hv.status(t).completed_at for t in hooked_tasks}
        lags = []
        for hit in hits:
            task_id = json.loads(hit["body"])["data"]["taskId"]
            completed = ended.get(task_id)
            if completed is not None:
                lags.append(hit["at"] - completed.timestamp())
        lag = statistics.median(lags)
        post = asyncio.run(_bare_post_p50(url, 200))
        rows.append(
            figure(
                "webhook_end_to_delivery_p50",
                lag * 1000,
                post * 1000,
                unit="ms",
                ratio=lag / post,
                goal="<= 50 ms",
                limit="250 ms",
                baseline_name="one bare aiohttp POST to the same receiver, p50",
                deliveries=len(lags),
                p90Ms=round(sorted(lags)[int(0.9 * len(lags))] * 1000, 3),
            )
        )
        rows.append(_http(settings, url, quick))
        rows.append(_rate(hv, url, 50 if quick else 250))
    finally:
        hv.shutdown_engine()
    return rows


def _http(settings: Settings, receiver: str, quick: bool) -> dict[str, Any]:
    """``POST /v1/execute`` p50: users of an org with three org-wide webhooks vs users of none."""
    port = _port()
    settings = settings.model_copy(
        update={"server": ServerSettings(port=port, min_replicas=1, max_replicas=1)}
    )
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        serve.run(build_app(settings), name="rlm-hooks", route_prefix="/", blocking=False)
        key = load_signing_key(settings.auth, settings.state_dir, settings.env)

        def token(sub: str, scopes: list[str], **claims: Any) -> dict[str, str]:
            signed = issue_token(
                sub, scopes, "enterprise", settings=settings.auth, key=key, **claims
            )
            return {"Authorization": f"Bearer {signed}"}

        base = f"http://127.0.0.1:{port}/v1"
        plain = [token(f"plain-{i}", ["rlm:execute"]) for i in range(32)]
        hooked = [token(f"org-{i}", ["rlm:execute"], org="bench-org") for i in range(32)]
        admin = token("bench-admin", ["rlm:admin"], org="bench-org")
        with httpx.Client(timeout=60, transport=httpx.HTTPTransport(socket_options=_NODELAY)) as c:
            deadline = time.monotonic() + 120
            while True:
                try:
                    c.get(f"{base}/health", timeout=5).raise_for_status()
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
            for _ in range(3):
                body = {"url": receiver, "events": ["task.completed"], "scope": "org"}
                c.post(f"{base}/webhooks", json=body, headers=admin).raise_for_status()
            blocks, size = (4, 25) if quick else (12, 25)
            samples: dict[str, list[float]] = {"plain": [], "hooked": []}
            pairs = []
            for k in range(blocks + 1):
                block: dict[str, list[float]] = {"plain": [], "hooked": []}
                for side, users in (("plain", plain), ("hooked", hooked)):
                    for i in range(size):
                        headers = users[(k * size + i) % len(users)]
                        t0 = time.perf_counter()
                        c.post(f"{base}/execute", json=SUM, headers=headers).raise_for_status()
                        block[side].append(time.perf_counter() - t0)
                if k == 0:
                    continue  # warm-up
                for side in block:
                    samples[side] += block[side]
                pairs.append(statistics.median(block["hooked"]) / statistics.median(block["plain"]))
    finally:
        serve.delete("rlm-hooks")
    ours, base_p50 = statistics.median(samples["hooked"]), statistics.median(samples["plain"])
    return figure(
        "webhook_http_execute_p50",
        ours * 1000,
        base_p50 * 1000,
        unit="ms",
        ratio=ours / base_p50,
        goal="<= 1.05x",
        limit="1.2x",
        baseline_name="POST /v1/execute p50 of users with no webhook",
        runs=len(samples["hooked"]),
        blockPairRatioMedian=round(statistics.median(pairs), 3),
        loadavg1m=round(os.getloadavg()[0], 1),
    )


#: Nagle's algorithm plus delayed ACKs would add ~40 ms to every POST (see benchmarks/api.py).
_NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rate(hv: rlm.Hypervisor, url: str, tasks: int) -> dict[str, Any]:
    busy = Viewer("bench-rate")
    for _ in range(20):
        hv.webhooks("create", busy, WebhookCreate(url=url, events=["task.completed"]))
    before = len(_received(url))
    expected = 20 * tasks
    for _ in range(tasks):
        hv.submit(SUM, owner_id=busy.user_id)
    hits = _wait_count(url, before + expected, 300)[before:]
    times = sorted(h["at"] for h in hits)
    rate = (len(times) - 1) / (times[-1] - times[0])
    bare = asyncio.run(_bare_rate(url, 4000, 64))
    return figure(
        "webhook_deliveries_per_s",
        rate,
        bare,
        unit="deliveries/s",
        ratio=rate / bare,
        goal=">= 500/s",
        limit=">= 100/s",
        baseline_name="bare aiohttp POSTs/s from one process, 64 in flight, same receiver",
        deliveries=len(times),
        expected=expected,
    )


async def _bare_post_p50(url: str, n: int) -> float:
    body = b'{"event":"task.completed","data":{}}'
    samples = []
    async with aiohttp.ClientSession() as session:
        for i in range(n + 20):
            t0 = time.perf_counter()
            async with session.post(url, data=body, headers={"webhook-id": f"bare-{i}"}) as r:
                await r.read()
            if i >= 20:
                samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


async def _bare_rate(url: str, n: int, concurrency: int) -> float:
    body = b'{"event":"task.completed","data":{}}'
    gate = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def one(i: int) -> None:
            async with gate, session.post(url, data=body, headers={"webhook-id": f"r-{i}"}) as r:
                await r.read()

        await asyncio.gather(*(one(i) for i in range(200)))
        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return n / (time.perf_counter() - t0)
