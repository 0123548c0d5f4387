"""A driver that submits a task over a large input and exits: ``python -m
tests.integration.input_driver STATE_DIR N``.

It joins the engine running on ``STATE_DIR`` (the test session's), submits a sum over ``N``
int64 items (well beyond what travels inline with each call), prints ``{"taskId": ...}`` and
exits at once, as a ``ray job submit`` script or a notebook kernel that is restarted would.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

import rlm
from rlm.config import EngineSettings, Settings


def main(argv: list[str]) -> int:
    state_dir, n = Path(argv[0]), int(argv[1])
    hv = rlm.connect(settings=Settings(state_dir=state_dir, engine=EngineSettings(agents=2)))
    task_id = hv.submit(
        {
            "type": "recursive",
            "description": "sum of a large input whose submitter exits",
            "input": {"items": np.arange(n, dtype=np.int64), "operation": "sum"},
            "options": {"leafSize": max(1, n // 8), "timeoutMs": 300_000},
        }
    )
    sys.stdout.write(json.dumps({"taskId": task_id}) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
