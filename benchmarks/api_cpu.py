"""CPU each process spends per ``POST /v1/execute`` and per bare-endpoint request (issue 18).

The API figures of :mod:`benchmarks.api` are wall-clock ratios, which the load of a shared
machine moves by tens of per cent. The CPU time a process spends per request moves much less:
this sets up the same two endpoints, sends ``N`` sequential requests to each (twice,
alternating), and prints, per request, the user + system CPU of the Serve proxy, the API
replica, the engine's core, the bare endpoint's replica, the GCS, the raylet, the agents and
this driver (from ``/proc`` via psutil). With ``SPY=DIR`` it then records py-spy profiles
(raw, 250 Hz, 12 s) of the proxy, the replica and the core while 16 clients send requests.

Run: ``python -m benchmarks.api_cpu`` (``N=400`` requests a round by default;
``PYTHONPATH=/path/to/other/checkout`` measures that checkout's code).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
from ray import serve

from benchmarks import api as bench
from benchmarks._cpu import cpu_seconds
from benchmarks._session import bench_session
from rlm.auth.keys import load_signing_key
from rlm.auth.tokens import issue_token
from rlm.config import EngineSettings, ServerSettings, Settings
from serve_app.deployment import build_app

__all__ = ["run"]

#: Ray processes measured, by the name Ray gives them (``ray::<name>``), and Ray's daemons.
_ACTORS = (
    "ProxyActor",
    "ServeReplica:rlm:rlm-api",
    "ServeReplica:bare:bare",
    "HypervisorCore",
    "_SecurityShell",
    "Agent",
    "ServeController",
)
_DAEMONS = ("raylet", "gcs_server")


def _processes() -> dict[str, list[psutil.Process]]:
    found: dict[str, list[psutil.Process]] = {}
    for proc in psutil.Process().children(recursive=True):
        try:
            cmd = proc.cmdline()
        except psutil.Error:
            continue
        if not cmd:
            continue
        line = " ".join(cmd)
        for name in _ACTORS:
            if f"ray::{name}" in line:
                found.setdefault(name, []).append(proc)
        for name in _DAEMONS:
            if cmd[0].endswith(name):
                found.setdefault(name, []).append(proc)
    return found


def _cpu(procs: dict[str, list[psutil.Process]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, members in procs.items():
        total = 0.0
        for proc in members:
            try:
                total += cpu_seconds(proc.pid)
            except OSError:  # gone since it was found
                continue
        out[name] = total
    own = os.times()
    out["driver"] = own.user + own.system
    return out


def _send(client: httpx.Client, url: str, headers: Iterator[dict[str, str]], n: int) -> None:
    for _ in range(n):
        client.post(url, json=bench.BODY, headers=next(headers)).raise_for_status()


def run(n: int = 400, spy: Path | None = None) -> list[dict[str, object]]:
    """Measure; print one JSON line per round and side; return them."""
    rows: list[dict[str, object]] = []
    with bench_session("rlm-bench-api-cpu-") as state:
        port = bench._port()
        settings = Settings(
            state_dir=state,
            engine=EngineSettings(agents=2),
            server=ServerSettings(port=port, min_replicas=1, max_replicas=1),
        )
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        try:
            serve.run(build_app(settings), name="rlm", route_prefix="/", blocking=False)
            serve.run(bench.Bare.bind(), name="bare", route_prefix="/bare", blocking=False)
            key = load_signing_key(settings.auth, settings.state_dir, settings.env)
            auth = [
                {
                    "Authorization": "Bearer "
                    + issue_token(
                        f"bench-{i}", ["rlm:execute"], "enterprise", settings=settings.auth, key=key
                    )
                }
                for i in range(64)
            ]
            ours = f"http://127.0.0.1:{port}/v1/execute"
            bare = f"http://127.0.0.1:{port}/bare/sum"
            deadline = time.monotonic() + 120
            while True:
                try:
                    httpx.post(
                        ours, json=bench.BODY, headers=auth[0], timeout=10
                    ).raise_for_status()
                    httpx.post(bare, json=bench.BODY, timeout=10).raise_for_status()
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
            procs = _processes()
            transport = httpx.HTTPTransport(socket_options=bench._NODELAY)
            with httpx.Client(timeout=60, transport=transport) as client:
                _send(client, ours, itertools.cycle(auth), 50)
                _send(client, bare, itertools.cycle([{}]), 50)
                for round_ in range(2):
                    for side, url, headers in (("ours", ours, auth), ("bare", bare, [{}])):
                        before = _cpu(procs)
                        t0 = time.perf_counter()
                        _send(client, url, itertools.cycle(headers), n)
                        wall = (time.perf_counter() - t0) / n
                        after = _cpu(procs)
                        row: dict[str, object] = {
                            "round": round_,
                            "side": side,
                            "wallMsPerRequest": round(wall * 1000, 3),
                            "cpuMsPerRequest": {
                                k: round((after[k] - before[k]) / n * 1000, 3) for k in after
                            },
                            "loadavg1m": round(os.getloadavg()[0], 1),
                        }
                        print(json.dumps(row), flush=True)
                        rows.append(row)
            if spy is not None:
                _profile(spy, procs, ours, auth)
        finally:
            serve.shutdown()
    return rows


def _profile(
    out: Path, procs: dict[str, list[psutil.Process]], url: str, auth: list[dict[str, str]]
) -> None:
    """py-spy records of the proxy, the replica and the core under 16 clients."""
    out.mkdir(parents=True, exist_ok=True)
    py_spy = Path(sys.executable).with_name("py-spy")
    spies = []
    for name in ("ProxyActor", "ServeReplica:rlm:rlm-api", "HypervisorCore"):
        for proc in procs.get(name, [])[:1]:
            target = out / f"{name.replace(':', '_')}.txt"
            command = [str(py_spy), "record", "-r", "250", "-d", "12", "-p", str(proc.pid)]
            spies.append(
                subprocess.Popen(
                    [*command, "-o", str(target), "-f", "raw"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
    time.sleep(1)
    rate = asyncio.run(bench._rps(url, auth, 10.0))
    print(json.dumps({"requestsPerSecondUnderPySpy": round(rate, 1)}), flush=True)
    for spy in spies:
        spy.wait()


if __name__ == "__main__":
    spy_dir = os.environ.get("SPY")
    run(int(os.environ.get("N", "400")), Path(spy_dir) if spy_dir else None)
