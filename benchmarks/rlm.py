"""RLM mode against the reference implementation, ``rlms`` 0.1.3, on the same model (issue #10).

Both run the same RLM on the same loopback model server (``python -m rlm.testing.openai_server
--latency-ms 100 --split-root``, a process of its own; it plays the root for both, see
:mod:`rlm.testing.split_root`): the context is 4,096 TREC questions (one a line) from
``../shared/data/oolong/trec_coarse_validated.jsonl``, and the root's one reply is a
```` ```repl ```` block that cuts it into K parts, counts each part's lines through one
``llm_query_batched`` of K sub-calls, and sets the answer (4,096, checked on both sides).

- wall time of one task, this service (``Hypervisor.execute``: admission, a warm session host,
  a confined sandbox, sub-calls through the gateways; provider ``maxConcurrency`` 256) vs
  ``rlms``' ``RLM.completion`` (its local REPL, sub-calls from its handler's pool of 16), at
  K = 64 and K = 256; both warmed up first, their runs alternated, medians reported;
- a sandbox cell round trip (``x = 1``) p50, beside ``rlms``' local REPL (``exec`` in its own
  process, no isolation) measured in the same run.

``rlms``' wall time is bimodal near K = 64: its LM handler is a ``socketserver`` stopped at the
end of every completion, and ``shutdown()`` waits for ``serve_forever``'s 0.5 s poll, so a run
takes either about 0 or about 0.5 s more, depending on where the batch ended in that poll
(it is part of what a caller of ``RLM.completion`` waits for). Each split figure also reports
the ratio against ``rlms``' fastest run (``ratioVsRlmsFastest``), the conservative reading.

Each split figure also reports ``guardMs``: what checking its K sub-call prompts against the
input policies costs (``PromptGuard.check_many``, in this process, median of 5), the part of
our wall time that security adds to a batch (turn messages are a few KB more).

``rlms`` installs a package named ``rlm``, which would shadow this one: it lives in a virtual
environment of its own (``make bench-rlms``: ``.venv-rlms`` from
``benchmarks/requirements-rlms.txt``; ``RLM_BENCH_RLMS_PYTHON`` names another interpreter), and
its side runs there (``benchmarks/_rlms_side.py``), driven over a pipe.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import rlm
from benchmarks._report import figure
from benchmarks._session import bench_session, lm_server_process
from rlm.config import EngineSettings, Settings
from rlm.eval.data import default_data_path
from rlm.lm.settings import LMSettings
from rlm.rlmmode.settings import RLMSettings
from rlm.runtime.security import PromptGuard
from rlm.sandbox import Sandbox
from rlm.testing.split_root import SUB_HEAD, split_query

__all__ = ["run"]

ROOT = Path(__file__).resolve().parents[1]
LINES = 4096
LATENCY_MS = 100
PYTHON_ENV = "RLM_BENCH_RLMS_PYTHON"
GOALS = {64: ("<= 0.3x", "0.5x"), 256: ("<= 0.25x", "0.5x")}


def _rlms_python() -> str:
    python = os.environ.get(PYTHON_ENV) or str(ROOT / ".venv-rlms" / "bin" / "python")
    if not Path(python).exists():
        raise SystemExit(
            f"rlms 0.1.3 is not installed at {python}: run `make bench-rlms` (a virtual "
            f"environment of its own, .venv-rlms) or set {PYTHON_ENV}"
        )
    return python


class _Reference:
    """The ``rlms`` side, a process of its own answering one JSON command per line."""

    def __init__(self, url: str, context_file: Path) -> None:
        script = ROOT / "benchmarks" / "_rlms_side.py"
        # -P: the script's directory is not put on sys.path, so ``rlm`` is the reference's.
        self._proc = subprocess.Popen(
            [_rlms_python(), "-P", str(script), url, str(context_file)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd="/",
        )

    def ask(self, **command: Any) -> dict[str, Any]:
        stdin: IO[str] | None = self._proc.stdin
        stdout: IO[str] | None = self._proc.stdout
        assert stdin is not None and stdout is not None
        stdin.write(json.dumps(command) + "\n")
        stdin.flush()
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"the rlms side died (exit {self._proc.wait()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        self._proc.wait(timeout=60)
        if self._proc.stdout is not None:
            self._proc.stdout.close()


@contextmanager
def _reference(url: str, context_file: Path) -> Iterator[_Reference]:
    ref = _Reference(url, context_file)
    try:
        yield ref
    finally:
        ref.close()


def _context() -> str:
    path = default_data_path()
    lines = []
    with path.open() as f:
        for raw in f:
            lines.append(json.loads(raw)["input"].replace("\n", " "))
            if len(lines) == LINES:
                break
    if len(lines) < LINES:
        raise SystemExit(f"{path} holds {len(lines)} questions; the benchmark needs {LINES}")
    return "\n".join(lines)


def _task(context: str, parts: int) -> dict[str, Any]:
    return {
        "type": "recursive",
        "description": f"rlm split into {parts}",
        "input": {"operation": "rlm", "context": context, "query": split_query(parts)},
        "options": {"memo": False, "maxIterations": 30, "timeoutMs": 600_000},
    }


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Run the RLM figures; ``quick`` takes fewer repetitions."""
    context = _context()
    with (
        lm_server_process(LATENCY_MS, "--split-root") as url,
        bench_session("rlm-bench-rlm-") as state,
    ):
        context_file = state / "context.txt"
        context_file.write_text(context)
        settings = Settings(
            state_dir=state,
            engine=EngineSettings(agents=2),
            lm=LMSettings(
                base_url=url,
                api_key="test-key",  # type: ignore[arg-type]
                model="fake-model",
                max_concurrency=256,
            ),
            rlm=RLMSettings(hosts=2, prestart=2),
        )
        hv = rlm.connect(settings=settings)
        try:
            with _reference(url, context_file) as ref:
                guard = PromptGuard(settings, cache_s=3600)
                rows = [_split(hv, ref, guard, context, parts, quick) for parts in (64, 256)]
                rows.append(_cell_round_trip(ref, quick))
        finally:
            hv.shutdown_engine()
    return rows


def _ours_once(hv: rlm.Hypervisor, context: str, parts: int) -> float:
    started = time.perf_counter()
    out = hv.execute(_task(context, parts))
    wall = time.perf_counter() - started
    if out.status != "completed" or out.output != str(LINES):
        raise RuntimeError(f"our RLM task did not count {LINES} lines: {out.status} {out.error}")
    if out.agent_calls != parts + 1:
        raise RuntimeError(f"{out.agent_calls} agent calls, not {parts} sub-calls and a turn")
    return wall


def _theirs_once(ref: _Reference, parts: int) -> float:
    answer = ref.ask(op="completion", query=split_query(parts))
    if answer.get("answer") != str(LINES):
        raise RuntimeError(f"rlms did not count {LINES} lines: {answer}")
    return float(answer["wallS"])


def _guard_ms(guard: PromptGuard, context: str, parts: int) -> float:
    """The input policies' cost on the K prompts the root sends (as the session checks them)."""
    lines = context.splitlines()
    size = -(-len(lines) // parts)
    prompts = [SUB_HEAD + "\n".join(lines[i : i + size]) for i in range(0, len(lines), size)]
    samples = []
    for _ in range(6):
        started = time.perf_counter()
        result = guard.check_many(prompts, org_id=None, user_id=None, field="bench")
        samples.append((time.perf_counter() - started) * 1000)
        if not result.allowed:
            raise RuntimeError(f"the benchmark's prompts were refused: {result.violations[:3]}")
    return statistics.median(samples[1:])


def _split(
    hv: rlm.Hypervisor,
    ref: _Reference,
    guard: PromptGuard,
    context: str,
    parts: int,
    quick: bool,
) -> dict[str, Any]:
    reps = 3 if quick else 9
    _ours_once(hv, context, parts)  # warm-up: engine, host, gateways' connections
    _theirs_once(ref, parts)
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(reps):  # alternated, so the machine's load weighs on both alike
        ours.append(_ours_once(hv, context, parts))
        theirs.append(_theirs_once(ref, parts))
    mine, base = statistics.median(ours), statistics.median(theirs)
    goal, limit = GOALS[parts]
    return figure(
        f"rlm_split_{parts}_vs_rlms",
        mine,
        base,
        unit="s",
        ratio=mine / base,
        goal=goal,
        limit=limit,
        baseline_name=(
            f"rlms 0.1.3 RLM.completion, local REPL, same server ({LATENCY_MS} ms per call), "
            "same root reply"
        ),
        runs=reps,
        lines=LINES,
        subCalls=parts,
        oursS=[round(w, 4) for w in ours],
        rlmsS=[round(w, 4) for w in theirs],
        rlmsFastestS=round(min(theirs), 4),
        ratioVsRlmsFastest=round(mine / min(theirs), 3),
        guardMs=round(_guard_ms(guard, context, parts), 2),
    )


def _cell_round_trip(ref: _Reference, quick: bool) -> dict[str, Any]:
    cells = 500 if quick else 2000
    with Sandbox(lambda kind, prompts, model: prompts) as box:
        box.run("x = 1")
        times = []
        for _ in range(cells):
            started = time.perf_counter()
            box.run("x = 1")
            times.append((time.perf_counter() - started) * 1000)
    started = time.perf_counter()
    with Sandbox(lambda kind, prompts, model: prompts):
        start_ms = (time.perf_counter() - started) * 1000
    times.sort()
    p50 = statistics.median(times)
    theirs = ref.ask(op="cells", n=cells)
    return figure(
        "sandbox_cell_round_trip_p50",
        p50,
        float(theirs["p50Ms"]),
        unit="ms",
        ratio=p50 / float(theirs["p50Ms"]),
        goal="<= 5 ms",
        limit="20 ms",
        baseline_name="rlms 0.1.3 LocalREPL.execute_code('x = 1'): exec in its own process, "
        "no isolation",
        cells=cells,
        p95Ms=round(times[int(len(times) * 0.95)], 4),
        rlmsP95Ms=round(float(theirs["p95Ms"]), 4),
        sandboxStartMs=round(start_ms, 1),
    )


if __name__ == "__main__":
    run()
