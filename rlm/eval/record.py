"""Recording a report in the API: ``rlm eval oolong --record`` and ``rlm eval record FILE``.

``rlm eval oolong`` runs on the engine it joins (a local Ray, or the cluster of ``rlm serve``),
which has no notion of the person at the keyboard; the API does. So a run is recorded the way
any client would record it: ``POST /v1/evaluations`` with the SDK, as the user of
``RLM_API_KEY`` at ``RLM_BASE_URL`` — the run is then that user's and its org's, with the same
scopes, validation and tenant isolation as every other write, whether the API is on this
machine or a cluster away.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

from rlm.errors import InvalidInput

__all__ = ["load_report", "record_report"]


def load_report(path: str) -> dict[str, Any]:
    """The report JSON in ``path`` (``-``: stdin).

    Raises:
        InvalidInput: The file cannot be read or is not a JSON object.
    """
    import sys

    try:
        data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as err:
        raise InvalidInput(f"cannot read {path}: {err.strerror}", field="report") from None
    try:
        report = orjson.loads(data)
    except orjson.JSONDecodeError as err:
        raise InvalidInput(f"{path} is not JSON: {err}", field="report") from None
    if not isinstance(report, dict):
        raise InvalidInput(f"{path} is not a report (a JSON object)", field="report")
    return report


def record_report(report: dict[str, Any], base_url: str | None = None) -> dict[str, Any]:
    """``POST /v1/evaluations`` with ``report`` as the user of ``RLM_API_KEY``.

    Args:
        report: The report's JSON (``EvalReport.to_json()``).
        base_url: The API (default ``RLM_BASE_URL``).

    Returns:
        The recorded run without its per-question parts: ``runId``, ``ownerId``, ``orgId``...

    Raises:
        InvalidInput: No API key is set, or the server refused the report.
        RLMError: The server's error (``Forbidden`` without ``rlm:execute``...).
    """
    from rlm_hypervisor import RLMClient

    if not os.environ.get("RLM_API_KEY"):
        raise InvalidInput(
            "recording a run needs RLM_API_KEY (a token with rlm:execute) and RLM_BASE_URL",
            field="RLM_API_KEY",
        )
    with RLMClient(base_url=base_url) as client:
        run = client.evaluations.record(report)
    summary = run.to_wire(exclude_none=False)
    for part in ("windows", "questions", "results"):
        summary.pop(part, None)
    return summary
