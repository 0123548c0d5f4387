"""The README's shell and Python examples, run in order against a service, as a newcomer would.

The test starts ``rlm serve`` itself (the README's ``make serve``; that block is marked as not
run), with ``HOME`` in a temporary directory so ``~/.rlm`` is fresh, and its language model is
the loopback OpenAI-compatible server of ``rlm.testing`` answering as the OOLONG oracle (this
machine reaches no paid LM API). Bash blocks run with ``bash -euo pipefail`` in a work directory
that links the checkout's ``.venv`` and ``examples``; variables a block assigns carry over to the
next blocks, and into the Python session. Python blocks run in one session, one namespace, as a
reader pastes them into one interpreter. A block that fails fails the test with its output.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlm.eval.data import default_data_path, label_map, load_instances
from rlm.testing import FakeLMServer
from rlm.testing.oolong_oracle import oolong_responder
from tests.api.readme_blocks import Block, readme_blocks
from tests.api.serve_process import free_port, rlm_serve

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
_ASSIGNED = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=", re.M)


class PythonSession:
    """One interpreter that runs the README's Python blocks in one namespace."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.api.readme_blocks"],
            cwd=cwd,
            env={**env, "PYTHONPATH": str(ROOT)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,  # the blocks' output goes to the test's captured stderr
            text=True,
        )

    def run(self, block: Block, code: str, env: dict[str, str]) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({"code": code, "line": block.line, "env": env}) + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        assert answer, f"the Python session died running the block at README line {block.line}"
        result = json.loads(answer)
        assert result["ok"], f"README line {block.line} failed:\n{result['error']}"

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _run_bash(
    block: Block, code: str, cwd: Path, env: dict[str, str], carried: dict[str, str]
) -> None:
    names = sorted(set(_ASSIGNED.findall(code)))
    prelude = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in carried.items())
    out = cwd / ".readme-vars"
    epilogue = "".join(f'printf "%s=%s\\0" {n} "${{{n}-}}" >> {out}\n' for n in names)
    out.unlink(missing_ok=True)
    log = cwd / ".readme-output"
    with log.open("w") as sink:
        # Output to a file, not a pipe: a server a block starts with '&' keeps its copy of the
        # descriptor open after the block ends; only bash itself is waited for.
        process = subprocess.Popen(
            ["bash", "-xeuo", "pipefail", "-c", prelude + code + epilogue],
            cwd=cwd,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its process group: what it started is stopped after it
        )
        timeout = float(os.environ.get("README_BLOCK_TIMEOUT_S", "600"))
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            pytest.fail(f"README line {block.line} ran past {timeout} s:\n{log.read_text()}")
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
    output = log.read_text()
    assert process.returncode == 0, (
        f"README line {block.line} exited {process.returncode}:\n{output}"
    )
    if out.exists():
        for pair in out.read_text().split("\0"):
            if "=" in pair:
                key, value = pair.split("=", 1)
                carried[key] = value


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    for name in (".venv", "examples"):
        (work / name).symlink_to(ROOT / name)
    # The README refers to the shared data as ../shared/data (beside the checkout).
    (tmp_path / "shared").symlink_to(default_data_path().parents[2])
    return work


@pytest.mark.timeout(1800)
def test_every_readme_example_runs_in_order(tmp_path: Path, workdir: Path) -> None:
    blocks = [b for b in readme_blocks(README) if b.lang in ("bash", "python")]
    assert len(blocks) > 10
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    labels = label_map(load_instances(default_data_path()))
    with FakeLMServer(responder=oolong_responder(labels)) as lm:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RLM_", "RAY_"))}
        env |= {
            "HOME": str(home),
            "RLM_ENGINE__AGENTS": "2",
            "RLM_LM__BASE_URL": lm.url,
            "RLM_LM__API_KEY": "test-key",
            "RLM_LM__MODEL": "fake-model",
        }
        with rlm_serve(env, port) as served:
            session = PythonSession(workdir, env)
            carried: dict[str, str] = {}
            ran = 0
            try:
                for block in blocks:
                    if block.skip is not None:
                        continue
                    code = block.code.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
                    started = time.monotonic()
                    if block.lang == "bash":
                        _run_bash(block, code, workdir, env, carried)
                    else:
                        session.run(block, code, carried)
                    took = time.monotonic() - started
                    print(f"README line {block.line}: ran in {took:.1f} s", file=sys.stderr)
                    ran += 1
            finally:
                session.close()
            assert served.process.poll() is None, served.output[-4000:]
    # Only the blocks that start services, need a cluster, install packages or open notebooks:
    # eight, the four of "Running on a Ray cluster" (a cluster's dashboard, Serve on port 8000,
    # cloud machines, Kubernetes; each covered by tests/deploy/), the SDK's two (a bare
    # install, the notebooks) and PostgreSQL's two (Docker; rlm db against it), each covered by
    # its tests.
    assert ran >= len(blocks) - 16
