"""Storage and tasks over storage, end to end, each against an in-process baseline.

- p50 latency of ``POST /v1/storage/read`` of 1 MiB (JWT checked, rate limit counted, read,
  base64 in a JSON answer) vs ``os.pread`` + ``pybase64`` in-process, same 64 MiB file;
- a recursive ``sum`` of 1e8 int64 read from storage by the leaves (default planning) vs
  ``numpy.sum`` over a new memory map of the same file.

Both files are read once before timing, so both sides read from the page cache. The rate limits
stay on: reads rotate over 32 enterprise users so the per-user limit (600/min) is not what is
measured.
"""

from __future__ import annotations

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
from ray import serve

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


def _read_figure(settings: Settings, port: int, quick: bool) -> dict[str, Any]:
    """POST /v1/storage/read of 1 MiB vs os.pread + pybase64 in-process."""
    size_mib = 64
    path = settings.state_dir / "data" / "public" / "blob.bin"
    _write_random_bytes(path, size_mib)
    _warm(path)
    key = load_signing_key(settings.auth, settings.state_dir, settings.env)
    auth = [
        {
            "Authorization": "Bearer "
            + issue_token(f"bench-{i}", ["rlm:read"], "enterprise", settings=settings.auth, key=key)
        }
        for i in range(32)
    ]
    headers = itertools.cycle(auth)
    url = f"http://127.0.0.1:{port}/v1/storage/read"
    body = {"connector": "local", "key": "public/blob.bin", "start": 0, "end": MIB}
    _wait_up(url, body, auth[0])

    n = 50 if quick else 200
    rng = np.random.default_rng(1)
    offsets = [int(x) * MIB for x in rng.integers(0, size_mib, n)]
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
    path.unlink()
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
        goal="<= 1.5x",
        limit="3x",
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
            rows.append(_read_figure(settings, port, quick))
        finally:
            serve.shutdown()
        rows.append(_sum_figure(hv, quick))
    finally:
        if hv is not None:
            hv.shutdown_engine()
    return rows


if __name__ == "__main__":
    run()
