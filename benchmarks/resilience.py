"""Resilience benchmarks (issue 17), each against a baseline measured in the same run.

Against a real ``rlm serve`` (two API replicas, the proxy guard, a local Ray of its own):

- ``GET /v1/health`` p99 while 600 connections hold a request head and never send its body
  (``Content-Length: 1000000``), vs its p99 on the idle service;
- ``POST /v1/execute`` p50 with an ``Idempotency-Key`` vs without (the key's lookup, and its
  row written with the task's record), interleaved;
- ``GET /v1/health``'s slowest answer while a ~50 MB execute body is sent (report only);
- time to the first successful execute after one of the two replicas is SIGKILLed, vs the
  execute's p50 before.

In a process of its own (a local Ray and the engine, no HTTP):

- the core actor's RSS growth over 100,000 small tasks (10,000 with ``--quick``), each admitted
  as an HTTP execute is (rate limit, quota hold, an idempotency key), after a warm-up that
  fills every bounded structure (the quota ledger keeps its 10,000 newest settlements).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from benchmarks._report import figure
from benchmarks._session import bench_session
from rlm.admission import Admission
from rlm.auth.keys import load_signing_key
from rlm.auth.tiers import TIERS
from rlm.auth.tokens import issue_token
from rlm.config import AuthSettings, EngineSettings, Settings
from rlm.tasks.idempotency import IdempotencyKey

__all__ = ["run"]

STALLED = 600
_STALL_ADDRESSES = [f"127.0.5.{i}" for i in range(1, 11)]  # 60 each: under the per-client cap
_SUM = {
    "type": "recursive",
    "description": "10-item sum",
    "input": {"items": list(range(1, 11)), "operation": "sum"},
}


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Run the resilience figures."""
    rows = _http_figures(quick)
    rows.append(_soak(quick))
    return rows


# -- a real rlm serve ----------------------------------------------------------------------


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _descendants(root: int, title: str) -> list[int]:
    """Processes under ``root`` whose command line starts with ``title``."""
    parent: dict[int, int] = {}
    commands: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                commands[int(entry)] = (
                    Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
                )
            except OSError:
                continue
            parent[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])

    def under(pid: int) -> bool:
        while pid > 1:
            pid = parent.get(pid, 0)
            if pid == root:
                return True
        return False

    return [p for p, cmd in commands.items() if cmd.startswith(title) and under(p)]


@contextmanager
def _rlm_serve(state: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = _port()
    env = {
        **os.environ,
        "RLM_STATE_DIR": str(state),
        "RLM_ENGINE__AGENTS": "2",
        # The stalls must outlast the probes: bodies may take two minutes here.
        "RLM_SERVER__BODY_TIMEOUT_S": "120",
    }
    env.pop("RAY_ADDRESS", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "rlm", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("rlm serve did not come up")
            time.sleep(1.0)
        while len(_descendants(process.pid, "ray::ServeReplica")) < 2:
            time.sleep(0.5)
        yield process, base
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _tokens(state: Path, n: int) -> list[dict[str, str]]:
    settings = Settings(state_dir=state, auth=AuthSettings())
    key = load_signing_key(settings.auth, state, settings.env)
    return [
        {
            "Authorization": "Bearer "
            + issue_token(
                f"bench-{i}",
                ["rlm:execute", "rlm:read"],
                "enterprise",
                settings=settings.auth,
                key=key,
            )
        }
        for i in range(n)
    ]


def _quantile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _http_figures(quick: bool) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="rlm-bench-resil-") as tmp:
        state = Path(tmp)
        with _rlm_serve(state) as (process, base):
            auth = _tokens(state, 16)
            nodelay = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
            transport = httpx.HTTPTransport(socket_options=nodelay)
            with httpx.Client(base_url=base, timeout=60, transport=transport) as client:
                rows.append(_idempotency_p50(client, auth, 100 if quick else 300))
                rows.append(_health_under_stall(client, base, auth, 100 if quick else 300))
                rows.append(_health_during_large_body(client, auth, quick))
                rows.append(_first_success_after_kill(client, process, auth, 2 if quick else 3))
    return rows


def _idempotency_p50(client: httpx.Client, auth: list[dict[str, str]], n: int) -> dict[str, Any]:
    with_key: list[float] = []
    without: list[float] = []
    for i in range(n + 20):
        headers = auth[i % len(auth)]
        keyed = {**headers, "Idempotency-Key": str(uuid.uuid4())}
        for samples, h in (
            ((with_key, keyed), (without, headers))
            if i % 2
            else (
                (without, headers),
                (with_key, keyed),
            )
        ):
            t0 = time.perf_counter()
            client.post("/execute", json=_SUM, headers=h).raise_for_status()
            if i >= 20:  # warm-up
                samples.append(time.perf_counter() - t0)
    ours, base = statistics.median(with_key), statistics.median(without)
    return figure(
        "execute p50 with an Idempotency-Key vs without",
        ours * 1000,
        base * 1000,
        unit="ms",
        ratio=ours / base,
        goal="<= 1.05x",
        limit="1.2x",
        baseline_name="the same execute without a key, interleaved",
        runs=n,
    )


def _health_p99(client: httpx.Client, auth: list[dict[str, str]], n: int) -> float:
    samples = []
    for i in range(n):
        t0 = time.perf_counter()
        client.get("/health", headers=auth[i % len(auth)]).raise_for_status()
        samples.append(time.perf_counter() - t0)
    return _quantile(samples, 0.99)


def _health_under_stall(
    client: httpx.Client, base: str, auth: list[dict[str, str]], n: int
) -> dict[str, Any]:
    idle = _health_p99(client, auth, n)
    port = int(base.rsplit(":", 1)[1].split("/")[0])
    head = (
        "POST /v1/execute HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: {auth[0]['Authorization']}\r\nContent-Length: 1000000\r\n\r\n"
    ).encode()
    stalled = []
    try:
        for i in range(STALLED):
            sock = socket.create_connection(
                ("127.0.0.1", port), timeout=30, source_address=(_STALL_ADDRESSES[i % 10], 0)
            )
            sock.sendall(head)
            stalled.append(sock)
        ours = _health_p99(client, auth, n)
    finally:
        for sock in stalled:
            sock.close()
    return figure(
        "GET /v1/health p99 during 600 stalled-body connections",
        ours * 1000,
        idle * 1000,
        unit="ms",
        ratio=ours / idle,
        goal="<= 100 ms",
        limit="1 s",
        baseline_name="GET /v1/health p99 with no stalled connection",
        runs=n,
    )


def _health_during_large_body(
    client: httpx.Client, auth: list[dict[str, str]], quick: bool
) -> dict[str, Any]:
    """Health while one client sends a ~50 MB execute (parsed off the replicas' loops)."""
    n = 2_000_000 if quick else 5_500_000
    items = ",".join(str(10_000_000 + i) for i in range(n))
    body = (
        '{"type":"parallel","description":"big","input":{"operation":"sum","items":['
        + items
        + "]}}"
    ).encode()
    idle = []
    for i in range(100):
        t0 = time.perf_counter()
        client.get("/health", headers=auth[i % len(auth)]).raise_for_status()
        idle.append(time.perf_counter() - t0)
    answers: list[int] = []

    def send() -> None:
        headers = {**auth[0], "Content-Type": "application/json"}
        with httpx.Client(base_url=str(client.base_url), timeout=300) as big:
            answers.append(big.post("/execute", content=body, headers=headers).status_code)

    sender = threading.Thread(target=send)
    sender.start()
    during = []
    i = 0
    while sender.is_alive():
        t0 = time.perf_counter()
        client.get("/health", headers=auth[i % len(auth)]).raise_for_status()
        during.append(time.perf_counter() - t0)
        i += 1
    sender.join()
    assert answers == [200], answers
    ours, base = max(during), _quantile(idle, 0.99)
    return figure(
        f"GET /v1/health slowest answer while a {len(body) / 1e6:.0f} MB execute is sent",
        ours * 1000,
        base * 1000,
        unit="ms",
        ratio=ours / base,
        goal="report",
        limit="—",
        baseline_name="GET /v1/health p99 idle",
        probes=len(during),
        p50DuringMs=round(statistics.median(during) * 1000, 2),
    )


def _first_success_after_kill(
    client: httpx.Client, process: subprocess.Popen[bytes], auth: list[dict[str, str]], kills: int
) -> dict[str, Any]:
    latencies = []
    for i in range(50):
        t0 = time.perf_counter()
        client.post("/execute", json=_SUM, headers=auth[i % len(auth)]).raise_for_status()
        latencies.append(time.perf_counter() - t0)
    p50 = statistics.median(latencies)
    gaps: list[float] = []
    failures = 0
    for _ in range(kills):
        while len(_descendants(process.pid, "ray::ServeReplica")) < 2:
            time.sleep(0.5)  # Serve replaces the replica killed before
        time.sleep(2.0)  # and routes to it
        victim = _descendants(process.pid, "ray::ServeReplica")[0]
        os.kill(victim, signal.SIGKILL)
        killed = time.perf_counter()
        while True:
            try:
                response = client.post("/execute", json=_SUM, headers=auth[0])
            except httpx.HTTPError:
                failures += 1
                continue
            if response.status_code == 200:
                gaps.append(time.perf_counter() - killed)
                break
            failures += 1
    ours = statistics.median(gaps)
    return figure(
        "time to the first successful execute after a replica is killed (2 replicas)",
        ours * 1000,
        p50 * 1000,
        unit="ms",
        ratio=ours / p50,
        goal="<= 500 ms",
        limit="2 s",
        baseline_name="execute p50 before the kill",
        kills=kills,
        gapsMs=[round(g * 1000, 1) for g in gaps],
        failedAttempts=failures,
    )


# -- the soak --------------------------------------------------------------------------------


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _soak(quick: bool) -> dict[str, Any]:
    import rlm

    warmup, measured = (12_000, 10_000) if quick else (15_000, 100_000)
    with bench_session("rlm-bench-soak-") as state:
        hv = rlm.connect(settings=Settings(state_dir=state, engine=EngineSettings(agents=2)))
        try:
            core = int(hv.engine_info()["corePid"])
            users = [
                Admission(f"soak-{i}", TIERS["enterprise"], user_id=f"soak-{i}", tier="enterprise")
                for i in range(256)
            ]
            start = _rss_mib(core)
            asyncio.run(_tasks(hv, users, 0, warmup))
            warm = _rss_mib(core)
            samples = []
            step = max(1, measured // 10)
            t0 = time.perf_counter()
            for done in range(0, measured, step):
                asyncio.run(_tasks(hv, users, warmup + done, step))
                samples.append(round(_rss_mib(core), 1))
            seconds = time.perf_counter() - t0
        finally:
            hv.shutdown_engine()
    growth = samples[-1] - warm
    return figure(
        f"core RSS growth over {measured:,} small tasks",
        growth,
        warm,
        unit="MiB",
        ratio=samples[-1] / warm,
        goal="<= 10 MiB",
        limit="50 MiB",
        baseline_name=f"core RSS after a {warmup:,}-task warm-up (ratio: end / that)",
        rssAtStartMiB=round(start, 1),
        rssEveryTenthMiB=samples,
        tasksPerSecond=round(measured / seconds, 1),
    )


async def _tasks(hv: Any, users: list[Admission], first: int, n: int) -> None:
    """``n`` small tasks, 32 at a time, each admitted as an HTTP execute with a key is."""
    gate = asyncio.Semaphore(32)

    async def one(i: int) -> None:
        user = users[i % len(users)]
        async with gate:
            spec = hv.prepare(_SUM, owner_id=user.user_id)
            key = IdempotencyKey.of(str(user.user_id), f"soak-{i}", _SUM)
            await hv.ask("execute", spec, user, key)

    await asyncio.gather(*(one(i) for i in range(first, first + n)))


if __name__ == "__main__":
    run(quick="--quick" in sys.argv)
