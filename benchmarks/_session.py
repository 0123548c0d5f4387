"""A local Ray and a temporary state directory for one benchmark suite, both cleaned up; the
stand-in LM server in a process of its own."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import ray

__all__ = ["bench_session", "lm_server_process"]


@contextmanager
def bench_session(prefix: str) -> Iterator[Path]:
    """Start a local Ray (``num_cpus=2``) unless one runs already; yield a new state directory.

    On exit the directory is removed and Ray is shut down if this call started it.
    """
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, namespace="rlm-bench")
    state = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield state
    finally:
        if started:
            ray.shutdown()
        shutil.rmtree(state, ignore_errors=True)


@contextmanager
def lm_server_process(latency_ms: int, *args: str) -> Iterator[str]:
    """A ``FakeLMServer`` in a process of its own (``args`` go to its command line); its URL.

    In the benchmark's own process it would share a GIL with the driver and slow both.
    """
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rlm.testing.openai_server",
            "--port",
            "0",
            "--latency-ms",
            str(latency_ms),
            *args,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("http://"):
            raise RuntimeError(f"the LM server did not start: {url!r}")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()
