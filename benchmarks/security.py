"""Security benchmarks (issue 11), each against its baseline in the same run.

- p50 of ``POST /v1/execute`` with every input policy on vs the same request from an org whose
  admin turned all six ``input_validation`` policies off (``PATCH /v1/security/policies``):
  a text task (``word_count`` over 100 lines, ~5 KB, every line scanned) and the 10-item sum;
- p50 of ``POST /v1/security/validate`` of 10 KB of text vs ``GET /v1/health`` (both with a
  token, both admitted against the rate limits);
- in-process validation of the same 10 KB (no HTTP), reported.

Requests alternate between the two sides of a figure, so a noisy machine slows both alike.
Users rotate over 64 enterprise tokens per side, so the per-user rate limits (600/min) are
not what is measured.
"""

from __future__ import annotations

import itertools
import os
import socket
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from ray import serve

from benchmarks._report import figure, median_time
from benchmarks._session import bench_session
from rlm.auth.keys import load_signing_key
from rlm.auth.tokens import issue_token
from rlm.config import EngineSettings, ServerSettings, Settings
from rlm.security import validate_text
from serve_app.deployment import build_app

__all__ = ["run"]

INPUT_POLICIES = (
    "input-size",
    "input-json-structure",
    "input-unicode",
    "input-secrets",
    "input-injection",
    "input-path-traversal",
)

_LINE = (
    "2026-01-15 10:30:{s:02d} INFO order {i} shipped to Bob (3 items, 42.50 EUR) "
    "see https://shop.example.com/o/{i}"
)
TEXT_TASK = {
    "type": "parallel",
    "description": "count the words of the order log",
    "input": {
        "items": [_LINE.format(s=i % 60, i=i) for i in range(100)],
        "operation": "word_count",
    },
}
SUM_TASK = {
    "type": "recursive",
    "description": "10-item sum",
    "input": {"items": list(range(1, 11)), "operation": "sum"},
}
_PROSE = (
    "The committee reviewed the quarterly figures on Tuesday. Revenue rose 4.2% to 1,250,000 "
    "EUR while costs fell; the key drivers were shipping (see https://example.com/report?q=3) "
    "and a new supplier in Lyon. Questions: what changed in March, and why did order 12345 "
    "take 9 days? Please summarise the findings in three bullet points for the board.\n"
)
TEN_KB = (_PROSE * (10_000 // len(_PROSE) + 1))[:10_000]

_NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _paired_p50(
    first: Callable[[], None], second: Callable[[], None], n: int
) -> tuple[float, float]:
    """Medians of ``first`` and ``second``, run alternately (order flipped each round)."""
    for _ in range(20):
        first()
        second()
    a: list[float] = []
    b: list[float] = []
    for i in range(n):
        for fn, out in ((first, a), (second, b)) if i % 2 == 0 else ((second, b), (first, a)):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return statistics.median(a), statistics.median(b)


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Run the security figures."""
    with bench_session("rlm-bench-security-") as state:
        return _figures(state, quick)


def _tokens(settings: Settings, prefix: str, org: str, scopes: list[str]) -> Iterator[str]:
    key = load_signing_key(settings.auth, settings.state_dir, settings.env)
    return itertools.cycle(
        [
            issue_token(
                f"{prefix}-{i}", scopes, "enterprise", org=org, settings=settings.auth, key=key
            )
            for i in range(64)
        ]
    )


def _figures(state: Path, quick: bool) -> list[dict[str, Any]]:
    rows = []
    port = _port()
    settings = Settings(
        state_dir=state,
        engine=EngineSettings(agents=2),
        server=ServerSettings(port=port, min_replicas=1, max_replicas=1),
    )
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        serve.run(build_app(settings), name="rlm", route_prefix="/", blocking=False)
        base = f"http://127.0.0.1:{port}/v1"
        on = _tokens(settings, "on", "bench-on", ["rlm:execute", "rlm:read"])
        off = _tokens(settings, "off", "bench-off", ["rlm:execute", "rlm:read"])
        admin = next(_tokens(settings, "admin", "bench-off", ["rlm:admin"]))
        client = httpx.Client(
            base_url=base, timeout=60, transport=httpx.HTTPTransport(socket_options=_NODELAY)
        )
        _wait_up(client, next(on))
        for policy in INPUT_POLICIES:
            client.patch(
                f"/security/policies/{policy}",
                json={"enabled": False},
                headers={"Authorization": f"Bearer {admin}"},
            ).raise_for_status()
        # Each side's org policies are cached by the replica: nothing is read per request.
        n = 60 if quick else 300

        def post(tokens: Iterator[str], body: dict[str, Any]) -> Callable[[], None]:
            def send() -> None:
                headers = {"Authorization": f"Bearer {next(tokens)}"}
                client.post("/execute", json=body, headers=headers).raise_for_status()

            return send

        for name, body in (
            ("word_count of 100 log lines, ~5 KB", TEXT_TASK),
            ("10-item sum", SUM_TASK),
        ):
            with_policies, without = _paired_p50(post(on, body), post(off, body), n)
            rows.append(
                figure(
                    f"p50 of POST /v1/execute ({name}) with every input policy on vs off",
                    with_policies * 1000,
                    without * 1000,
                    unit="ms",
                    ratio=with_policies / without,
                    goal="<= 1.1x",
                    limit="1.3x",
                    baseline_name="the same request, the org's six input policies disabled",
                )
            )

        def validating(text: str) -> Callable[[], None]:
            def send() -> None:
                headers = {"Authorization": f"Bearer {next(on)}"}
                answer = client.post("/security/validate", json={"input": text}, headers=headers)
                answer.raise_for_status()
                assert answer.json()["allowed"] is True

            return send

        validate = validating(TEN_KB)

        def health() -> None:
            headers = {"Authorization": f"Bearer {next(on)}"}
            client.get("/health", headers=headers).raise_for_status()

        validated, healthy = _paired_p50(validate, health, n)
        rows.append(
            figure(
                "p50 of POST /v1/security/validate (10 KB text) vs GET /v1/health",
                validated * 1000,
                healthy * 1000,
                unit="ms",
                ratio=validated / healthy,
                goal="<= 1.5x",
                limit="3x",
                baseline_name="GET /v1/health with a token (never rate-limited: no engine call)",
            )
        )
        # Where the rest goes: the same route with almost nothing to validate pays the same
        # admission (the rate count, one engine round trip), which health no longer pays.
        tiny, health_again = _paired_p50(validating("What is 2 + 2?"), health, n)
        rows.append(
            figure(
                "p50 of POST /v1/security/validate (14 characters) vs GET /v1/health",
                tiny * 1000,
                health_again * 1000,
                unit="ms",
                ratio=tiny / health_again,
                goal="report",
                limit="—",
                baseline_name="GET /v1/health with a token (same)",
            )
        )
        in_process = median_time(lambda: validate_text(TEN_KB), repeat=50 if quick else 200)
        rows.append(
            figure(
                "validate_text of 10 KB in-process vs the /health round trip",
                in_process * 1000,
                healthy * 1000,
                unit="ms",
                ratio=in_process / healthy,
                goal="report",
                limit="—",
                baseline_name="GET /v1/health p50 above",
            )
        )
        client.close()
    finally:
        serve.shutdown()
    print(f'{{"uptime": "{os.getloadavg()}"}}', flush=True)
    return rows


def _wait_up(client: httpx.Client, token: str) -> None:
    deadline = time.monotonic() + 120
    headers = {"Authorization": f"Bearer {token}"}
    while True:
        try:
            client.post("/execute", json=SUM_TASK, headers=headers).raise_for_status()
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


if __name__ == "__main__":
    run()
