"""The README's examples, in order, and a Python session that runs its Python blocks.

A fenced block whose language is ``bash`` or ``python`` is an example; the line right before
its fence may say ``<!-- readme-test: skip: <reason> -->`` (e.g. ``make serve``: the test starts
the service itself). Blocks of any other language (YAML, output) are not run.
"""

from __future__ import annotations

import json
import re
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Block", "readme_blocks"]

_FENCE = re.compile(r"^```(\w*)\s*$")
_SKIP = re.compile(r"^<!-- readme-test: skip: (.+) -->$")


@dataclass(frozen=True)
class Block:
    """One example: its language, code, first line in the README, and skip reason if any."""

    lang: str
    code: str
    line: int
    skip: str | None


def readme_blocks(path: Path) -> list[Block]:
    """The README's fenced blocks, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        start, lang = i, match.group(1)
        end = start + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        previous = lines[start - 1].strip() if start > 0 else ""
        skip = _SKIP.match(previous)
        code = "\n".join(lines[start + 1 : end]) + "\n"
        blocks.append(Block(lang, code, start + 1, skip.group(1) if skip else None))
        i = end + 1
    return blocks


def _serve() -> None:  # pragma: no cover - runs in the README session's own process
    """Run Python blocks sent as JSON lines on stdin in one namespace; answer a JSON line each."""
    namespace: dict[str, object] = {"__name__": "__main__"}
    out = sys.stdout
    sys.stdout = sys.stderr  # the blocks' own prints must not mix with the answers
    for line in sys.stdin:
        request = json.loads(line)
        import os

        os.environ.update(request.get("env", {}))
        try:
            code = compile(request["code"], f"<README line {request['line']}>", "exec")
            exec(code, namespace)
            answer = {"ok": True}
        except BaseException:
            answer = {"ok": False, "error": traceback.format_exc()}
        out.write(json.dumps(answer) + "\n")
        out.flush()


if __name__ == "__main__":  # pragma: no cover
    _serve()
