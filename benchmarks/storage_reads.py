"""Local storage reads beside ``os.pread``, measured in one run.

Prints one JSON line per figure, with the baseline measured in the same run and the ratio:

* ``mmap_read_step_1mib``: seconds per ``StorageService.read(method="mmap")`` of 1 MiB at a
  random offset (the read step: confinement cache, ``fstat`` check, zero-copy slice; the
  bytes are not touched) against ``os.pread`` of 1 MiB on a cached descriptor.
  ``ratio = ours / baseline`` (below 1: faster).
* ``direct_throughput_1mib``: MiB/s of ``StorageService.read(method="direct")`` against
  ``os.pread`` on a cached descriptor. ``ratio = ours / baseline`` (1: no overhead).
* ``mmap_cached_vs_new_map_1mib``: the mmap read step against opening a new
  ``pyarrow.memory_map`` per request. ``ratio = ours / baseline``.
* ``read_and_base64_1mib``: the endpoint's work (``auto`` read + ``encode_base64``)
  against ``os.pread`` + the standard library's ``base64``. ``ratio = ours / baseline``.

Each figure is the median over ``--rounds`` rounds of the mean over ``--reps`` reads; ours
and the baseline read the same random offsets, in alternating blocks of 20 reads, from a
file in the page cache.

Run: ``python benchmarks/storage_reads.py [--size-mib 256] [--rounds 7] [--reps 400]``
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa

from rlm.storage import LocalConnector, StorageService, StorageSettings, encode_base64

MIB = 1 << 20


def _compare(
    ours: Callable[[int], object],
    baseline: Callable[[int], object],
    *,
    rounds: int,
    reps: int,
    span: int,
    seed: int,
    block: int = 20,
) -> tuple[float, float]:
    """Median seconds per call of ``ours`` and ``baseline`` over the same offsets.

    The two run in alternating blocks of ``block`` reads (the order flips every block), so
    drift in the machine's load lands on both sides instead of on whichever ran second.
    """
    rng = np.random.default_rng(seed)
    ours_s: list[float] = []
    base_s: list[float] = []
    ours(0)  # Warm caches (descriptor, map) outside the timed loops.
    baseline(0)
    for _ in range(rounds):
        offsets = [int(x) for x in rng.integers(0, span, reps)]
        spent = {id(ours): 0.0, id(baseline): 0.0}
        for i in range(0, reps, block):
            chunk = offsets[i : i + block]
            pair = (ours, baseline) if (i // block) % 2 == 0 else (baseline, ours)
            for fn in pair:
                began = time.perf_counter()
                for off in chunk:
                    fn(off)
                spent[id(fn)] += time.perf_counter() - began
        ours_s.append(spent[id(ours)] / reps)
        base_s.append(spent[id(baseline)] / reps)
    return statistics.median(ours_s), statistics.median(base_s)


def _emit(figure: str, unit: str, ours: float, baseline: float, name: str, **extra: object) -> None:
    print(
        json.dumps(
            {
                "figure": figure,
                "unit": unit,
                "ours": ours,
                "baseline": baseline,
                "baseline_name": name,
                "ratio": ours / baseline,
                "ratio_definition": "ours / baseline",
                **extra,
            }
        ),
        flush=True,
    )


def run(quick: bool = False) -> None:
    """Run the storage figures (``quick``: a smaller file, fewer rounds)."""
    main(["--size-mib", "64", "--rounds", "3", "--reps", "100"] if quick else [])


def main(argv: list[str] | None = None) -> None:
    """Write a temporary file, run every figure, print the JSON lines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--reps", type=int, default=400)
    parser.add_argument("--dir", type=Path, default=None, help="where the temp file goes")
    args = parser.parse_args(argv)
    size = args.size_mib * MIB
    span = size - MIB
    common = {"size_mib": args.size_mib, "rounds": args.rounds, "reps": args.reps}

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        path = root / "bench.bin"
        gen = np.random.default_rng(0)
        with open(path, "wb") as out:
            for _ in range(args.size_mib):
                out.write(gen.integers(0, 256, MIB, dtype=np.uint8).tobytes())
        with open(path, "rb") as src:  # Into the page cache, so both sides read memory.
            while src.read(64 * MIB):
                pass

        settings = StorageSettings(
            connectors={"local": LocalConnector(root=root)}, max_read_bytes=MIB
        )
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        with StorageService(settings) as storage:

            def pread(off: int) -> object:
                return os.pread(fd, MIB, off)

            def ours_mmap(off: int) -> object:
                return storage.read("local", "bench.bin", off, off + MIB, "mmap").data

            def ours_direct(off: int) -> object:
                return storage.read("local", "bench.bin", off, off + MIB, "direct").data

            def new_map(off: int) -> object:
                return pa.memory_map(str(path)).read_buffer().slice(off, MIB)

            def ours_endpoint(off: int) -> object:
                return encode_base64(storage.read("local", "bench.bin", off, off + MIB).data)

            def base_endpoint(off: int) -> object:
                return base64.b64encode(os.pread(fd, MIB, off)).decode("ascii")

            kw = {"rounds": args.rounds, "reps": args.reps, "span": span}
            ours, base = _compare(ours_mmap, pread, seed=1, **kw)
            _emit("mmap_read_step_1mib", "s/read", ours, base, "os.pread (cached fd)", **common)

            ours, base = _compare(ours_direct, pread, seed=2, **kw)
            _emit(
                "direct_throughput_1mib",
                "MiB/s",
                1.0 / ours,
                1.0 / base,
                "os.pread (cached fd)",
                **common,
            )

            ours, base = _compare(ours_mmap, new_map, seed=3, **kw)
            _emit(
                "mmap_cached_vs_new_map_1mib",
                "s/read",
                ours,
                base,
                "pyarrow.memory_map per read",
                **common,
            )

            # The stdlib baseline takes milliseconds a read: fewer reps keep the run short.
            kw["reps"] = max(args.reps // 4, 10)
            ours, base = _compare(ours_endpoint, base_endpoint, seed=4, **kw)
            _emit(
                "read_and_base64_1mib",
                "s/read",
                ours,
                base,
                "os.pread + stdlib base64",
                **{**common, "reps": kw["reps"]},
            )
        os.close(fd)


if __name__ == "__main__":
    main()
