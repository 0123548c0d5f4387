"""A local Ray and a temporary state directory for one benchmark suite, both cleaned up."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import ray

__all__ = ["bench_session"]


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
