"""Print the service's OpenAPI document, as ``GET /openapi.json`` serves it, without Ray.

``create_app`` builds the FastAPI application around an engine stand-in (the document does not
depend on the engine), with default settings in a throw-away state directory, so the document
is the one every deployment of this checkout serves. ``npm run generate`` and the drift check
(``tests/api/test_sdk_typescript.py``) both read it from here.

Usage: ``python sdk/typescript/scripts/dump_openapi.py > sdk/typescript/openapi.json``
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["openapi_document"]


class _Engine:
    """The engine seam of ``create_app``; building the document never calls it."""

    async def ask(self, method: str, *args: Any) -> tuple[Any, dict[str, str]]:
        raise RuntimeError(f"the OpenAPI dump has no engine (asked {method!r})")


def openapi_document() -> dict[str, Any]:
    """The document ``/openapi.json`` serves for this checkout's code and default settings."""
    from rlm.config import Settings
    from serve_app import create_app

    # Settings read RLM_* from the environment; the document must not depend on the caller's.
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("RLM_")}
    try:
        with tempfile.TemporaryDirectory() as state:
            document: dict[str, Any] = create_app(
                Settings(state_dir=Path(state)), _Engine()
            ).openapi()
    finally:
        os.environ.update(saved)
    return document


def main() -> None:
    """Write the document to stdout as indented JSON (stable key order, one trailing newline)."""
    logging.disable(logging.WARNING)  # the generated-secret notice is not part of the output
    sys.stdout.write(json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository root
    main()
