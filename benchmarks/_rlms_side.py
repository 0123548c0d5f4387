"""The reference side of ``benchmarks/rlm.py``: ``rlms`` 0.1.3 in a process of its own.

Run by the benchmark with the interpreter of the virtual environment that holds ``rlms``
(``.venv-rlms``, see ``benchmarks/requirements-rlms.txt``) and ``-P``, so ``import rlm`` finds
the reference's package, not this repository's (the two distributions share the import name
``rlm``). It imports nothing of this repository.

Protocol: one JSON command per stdin line, one JSON answer per stdout line:

* ``{"op": "completion", "query": Q}``: ``RLM.completion(context, root_prompt=Q)`` on the
  context file, timed; answers ``{"wallS", "answer"}``;
* ``{"op": "cells", "n": N}``: ``LocalREPL.execute_code("x = 1")`` N times; answers
  ``{"p50Ms", "p95Ms"}``.

Usage: ``python -P benchmarks/_rlms_side.py BASE_URL CONTEXT_FILE``
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any


def _completion(context: str, url: str, query: str) -> dict[str, Any]:
    from rlm import RLM

    engine = RLM(
        backend="openai",
        backend_kwargs={"model_name": "fake-model", "base_url": url, "api_key": "test-key"},
        environment="local",
        max_iterations=30,
        max_depth=1,
    )
    started = time.perf_counter()
    result = engine.completion(context, root_prompt=query)
    return {"wallS": time.perf_counter() - started, "answer": result.response}


def _cells(n: int) -> dict[str, Any]:
    from rlm.environments.local_repl import LocalREPL

    repl = LocalREPL()
    try:
        repl.execute_code("x = 1")
        times = []
        for _ in range(n):
            started = time.perf_counter()
            repl.execute_code("x = 1")
            times.append((time.perf_counter() - started) * 1000)
    finally:
        repl.cleanup()
    times.sort()
    return {"p50Ms": statistics.median(times), "p95Ms": times[int(len(times) * 0.95)]}


def main() -> None:
    url, context_file = sys.argv[1], sys.argv[2]
    context = Path(context_file).read_text()
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "completion":
            answer = _completion(context, url, command["query"])
        elif command["op"] == "cells":
            answer = _cells(int(command["n"]))
        else:
            answer = {"error": f"unknown op {command['op']!r}"}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
