"""Storage and tasks over storage, end to end, each against an in-process baseline.

- p50 latency of ``POST /v1/storage/read`` of 1 MiB (JWT checked, rate limit counted, read,
  base64 in a JSON answer) vs ``os.pread`` + ``pybase64`` in-process, same 64 MiB file;
- the same read answered as raw bytes (``Accept: application/octet-stream``) vs a bare Serve
  endpoint returning the same 1 MiB, blocks of each alternating;
- a recursive ``sum`` of 1e8 int64 read from storage by the leaves (default planning) vs
  ``numpy.sum`` over a new memory map of the same file.

Both files are read once before timing, so both sides read from the page cache. The rate limits
stay on: reads rotate over 32 enterprise users so the per-user limit (600/min) is not what is
measured.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pybase64
from fastapi import FastAPI
from ray import serve
from starlette.responses import Response

import rlm
from benchmarks._report import figure, median_time
from benchmarks._session import bench_session
from rlm.auth.keys import load_signing_key
from rlm.auth.tokens import issue_token
from rlm.config import EngineSettings, ServerSettings, Settings
from serve_app.deployment import build_app

__all__ = ["run"]

MIB = 1 << 20

#: Nagle's algorithm plus delayed ACKs would add ~40 ms to every POST (head and body are two
#: writes); real clients set TCP_NODELAY.
_NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


bare = FastAPI()


@bare.post("/read")
async def _bare_read(body: dict[str, Any]) -> Response:
    # The same bytes the endpoint returns, read the same way (off the event loop), with
    # nothing else: no token, no rate limit, no access policy, no connector.
    def pread() -> bytes:
        fd = os.open(body["path"], os.O_RDONLY | os.O_CLOEXEC)
        try:
            return os.pread(fd, body["end"] - body["start"], body["start"])
        finally:
            os.close(fd)

    data = await asyncio.to_thread(pread)
    return Response(data, media_type="application/octet-stream")


@serve.deployment(name="bare", ray_actor_options={"num_cpus": 0}, max_ongoing_requests=256)
@serve.ingress(bare)
class Bare:
    """The baseline: Serve + FastAPI returning the bytes, no auth, no storage layer."""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write_random_bytes(path: Path, mib: int) -> None:
    gen = np.random.default_rng(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        for _ in range(mib):
            out.write(gen.integers(0, 256, MIB, dtype=np.uint8).tobytes())


def _write_int64(path: Path, n: int, chunk: int = 10_000_000) -> None:
    gen = np.random.default_rng(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        for lo in range(0, n, chunk):
            gen.integers(-(10**9), 10**9, size=min(chunk, n - lo), dtype=np.int64).tofile(out)


def _warm(path: Path) -> None:
    """Read the file once, so both sides read from the page cache."""
    with open(path, "rb") as src:
        while src.read(64 * MIB):
            pass


def _p50(fn: Callable[[int], object], offsets: list[int], warmup: int) -> float:
    for off in offsets[:warmup]:
        fn(off)
    samples = []
    for off in offsets:
        t0 = time.perf_counter()
        fn(off)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def _wait_up(url: str, body: dict[str, Any], headers: dict[str, str]) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            httpx.post(url, json=body, headers=headers, timeout=10).raise_for_status()
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _tokens(settings: Settings) -> list[dict[str, str]]:
    key = load_signing_key(settings.auth, settings.state_dir, settings.env)
    return [
        {
            "Authorization": "Bearer "
            + issue_token(f"bench-{i}", ["rlm:read"], "enterprise", settings=settings.auth, key=key)
        }
        for i in range(32)
    ]


def _offsets(n: int, size_mib: int) -> list[int]:
    rng = np.random.default_rng(1)
    return [int(x) * MIB for x in rng.integers(0, size_mib, n)]


def _read_figure(settings: Settings, port: int, path: Path, quick: bool) -> dict[str, Any]:
    """POST /v1/storage/read of 1 MiB vs os.pread + pybase64 in-process."""
    size_mib = path.stat().st_size // MIB
    auth = _tokens(settings)
    headers = itertools.cycle(auth)
    url = f"http://127.0.0.1:{port}/v1/storage/read"
    body = {"connector": "local", "key": "public/blob.bin", "start": 0, "end": MIB}
    _wait_up(url, body, auth[0])

    n = 50 if quick else 200
    offsets = _offsets(n, size_mib)
    warmup = 20

    with httpx.Client(timeout=60, transport=httpx.HTTPTransport(socket_options=_NODELAY)) as client:

        def ours_read(off: int) -> object:
            response = client.post(
                url,
                json={
                    "connector": "local",
                    "key": "public/blob.bin",
                    "start": off,
                    "end": off + MIB,
                },
                headers=next(headers),
            )
            response.raise_for_status()
            answer = response.json()
            assert answer["objectSize"] == size_mib * MIB
            return answer

        ours = _p50(ours_read, offsets, warmup)
        check = ours_read(offsets[0])

    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:

        def base_read(off: int) -> object:
            return pybase64.b64encode_as_string(os.pread(fd, MIB, off))

        base = _p50(base_read, offsets, warmup)
        assert check["data"] == base_read(offsets[0]), "the endpoint's bytes differ"
    finally:
        os.close(fd)
    return figure(
        "end-to-end POST /v1/storage/read of 1 MiB vs pread + pybase64 in-process",
        ours * 1000,
        base * 1000,
        unit="ms",
        ratio=ours / base,
        goal="report",
        limit="—",
        baseline_name="os.pread (cached fd) + pybase64.b64encode_as_string, in-process",
        samples=n,
        method=check["method"],
    )


def _raw_read_figure(settings: Settings, port: int, path: Path, quick: bool) -> dict[str, Any]:
    """POST /v1/storage/read of 1 MiB as raw bytes vs a bare Serve endpoint returning them.

    Blocks of each side alternate, so a shared machine's drifting load hits both alike.
    """
    size_mib = path.stat().st_size // MIB
    headers = itertools.cycle(_tokens(settings))
    ours_url = f"http://127.0.0.1:{port}/v1/storage/read"
    bare_url = f"http://127.0.0.1:{port}/bare/read"
    raw = {"Accept": "application/octet-stream"}
    _wait_up(
        ours_url,
        {"connector": "local", "key": "public/blob.bin", "start": 0, "end": 1},
        next(headers),
    )
    _wait_up(bare_url, {"path": str(path), "start": 0, "end": 1}, {})
    blocks, size = (4, 25) if quick else (10, 25)
    offsets = _offsets(blocks * size, size_mib)
    samples: dict[str, list[float]] = {"ours": [], "bare": []}
    transport = httpx.HTTPTransport(socket_options=_NODELAY)
    with httpx.Client(timeout=60, transport=transport) as client:

        def ours(off: int) -> bytes:
            body = {"connector": "local", "key": "public/blob.bin", "start": off, "end": off + MIB}
            response = client.post(ours_url, json=body, headers={**raw, **next(headers)})
            response.raise_for_status()
            return response.content

        def base(off: int) -> bytes:
            body = {"path": str(path), "start": off, "end": off + MIB}
            response = client.post(bare_url, json=body)
            response.raise_for_status()
            return response.content

        assert ours(offsets[0]) == base(offsets[0]), "the endpoint's bytes differ"
        for side in (ours, base):  # warm both paths
            for off in offsets[:20]:
                side(off)
        for b in range(blocks):
            block = offsets[b * size : (b + 1) * size]
            for name, side in (("ours", ours), ("bare", base)):
                for off in block:
                    t0 = time.perf_counter()
                    side(off)
                    samples[name].append(time.perf_counter() - t0)
    ours_p50 = statistics.median(samples["ours"])
    base_p50 = statistics.median(samples["bare"])
    return figure(
        "POST /v1/storage/read 1 MiB raw (application/octet-stream) vs a bare Serve endpoint",
        ours_p50 * 1000,
        base_p50 * 1000,
        unit="ms",
        ratio=ours_p50 / base_p50,
        goal="<= 1.3x",
        limit="2x",
        baseline_name="Serve + FastAPI endpoint returning the same 1 MiB (os.pread in a thread)",
        samples=len(samples["ours"]),
        loadavg1m=round(os.getloadavg()[0], 1),
    )


def _sum_figure(hv: rlm.Hypervisor, quick: bool) -> dict[str, Any]:
    """Storage-backed recursive sum of 1e8 int64 vs numpy.sum over the memory map."""
    n = 20_000_000 if quick else 100_000_000
    path = hv.settings.state_dir / "data" / "big.i64"
    _write_int64(path, n)
    _warm(path)
    request = {
        "type": "recursive",
        "description": f"sum of {n} int64 from storage",
        "input": {
            "source": {"connector": "local", "key": "big.i64", "format": "int64"},
            "operation": "sum",
        },
    }

    def baseline() -> int:
        return int(np.memmap(path, dtype=np.int64, mode="r").sum())

    expected = baseline()
    out = hv.execute(request)
    assert out.status == "completed", out.error
    assert out.output == expected, (out.output, expected)
    reps = 3 if quick else 5
    ours = median_time(lambda: hv.execute(request), repeat=reps)
    base = median_time(baseline, repeat=reps)
    spec = hv.prepare(request)
    prepare_s = median_time(lambda: hv.prepare(request), repeat=reps)
    path.unlink()
    return figure(
        "storage-backed recursive sum of 1e8 int64 vs numpy.sum over the memory map",
        ours,
        base,
        unit="s",
        ratio=ours / base,
        goal="<= 1.0x",
        limit="1.5x",
        baseline_name="np.memmap(path, int64).sum(), a new map each time",
        agentCalls=out.agent_calls,
        items=n,
        leaves=len(spec.plan.leaves),
        decompositionDepth=out.decomposition_depth,
        prepareSeconds=round(prepare_s, 6),
    )


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Run the storage-task figures; ``quick`` shrinks sizes and repetitions."""
    with bench_session("rlm-bench-storage-") as state:
        return _figures(state, quick)


def _figures(state: Path, quick: bool) -> list[dict[str, Any]]:
    rows = []
    (state / "data").mkdir()
    port = _port()
    settings = Settings(
        state_dir=state,
        engine=EngineSettings(agents=2),
        server=ServerSettings(port=port, min_replicas=1, max_replicas=1),
    )
    hv: rlm.Hypervisor | None = None
    try:
        # The engine first: the Serve replica joins it (one core per state directory).
        hv = rlm.connect(settings=settings)
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        try:
            serve.run(build_app(settings), name="rlm", route_prefix="/", blocking=False)
            serve.run(Bare.bind(), name="bare", route_prefix="/bare", blocking=False)
            blob = settings.state_dir / "data" / "public" / "blob.bin"
            _write_random_bytes(blob, 64)
            _warm(blob)
            rows.append(_read_figure(settings, port, blob, quick))
            rows.append(_raw_read_figure(settings, port, blob, quick))
            blob.unlink()
        finally:
            serve.shutdown()
        rows.append(_sum_figure(hv, quick))
    finally:
        if hv is not None:
            hv.shutdown_engine()
    return rows


if __name__ == "__main__":
    run()
