"""``scripts/system-deps.sh``: on a machine that has what the tests drive it does nothing and
succeeds; a Node.js older than the TypeScript SDK's ``engines`` (>= 20) is refused with a
sentence that says so, instead of failing the SDK's tests obscurely later."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.shared_data import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "system-deps.sh"


def _run(path_first: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if path_first is not None:
        env["PATH"] = f"{path_first}{os.pathsep}{env['PATH']}"
    return subprocess.run(
        ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_sdk_asks_for_node_20_and_this_machine_has_it() -> None:
    engines = json.loads((REPO_ROOT / "sdk/typescript/package.json").read_text())["engines"]
    assert engines["node"] == ">=20"  # the script's check below mirrors this
    done = _run()
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # everything present: nothing installed, nothing said


def test_an_old_node_is_refused_with_a_reason(tmp_path: Path) -> None:
    node = tmp_path / "node"
    node.write_text('#!/bin/sh\nif [ "$1" = "-p" ]; then echo 18; else echo v18.19.0; fi\n')
    node.chmod(0o755)
    done = _run(tmp_path)
    assert done.returncode == 1
    assert "Node.js v18.19.0 is too old" in done.stderr
    assert "needs 20 or newer" in done.stderr
