"""The TypeScript SDK's overhead (issue 13): ``client.execute`` p50 vs ``curl`` p50, same server.

Both send the same request to the same ``POST /v1/execute`` of one Serve deployment (a 10-item
sum): the same headers (bearer token, JSON body, a new ``Idempotency-Key`` each time, as the SDK
sends), over a kept-alive connection, rotating over 64 enterprise users so no rate limit is
what is measured. ``curl`` runs all its requests in one process (``--next``) and reports each
transfer's own ``time_total``, so its process start is not counted; the SDK's time is taken in
Node around each awaited ``client.execute`` (building the request, ``fetch``, parsing the
answer), after a warm-up (a long-lived client's steady state: code compiled, connections
open). curl and Node alternate in blocks, so a busy spell of the machine falls on both. A
second figure compares the SDK with Node's bare ``fetch`` sending the same request, call for
call in the same process, to tell the SDK's own cost from its HTTP client's.

The SDK is built first (``npm ci`` when ``node_modules`` is absent, then ``tsc``).
"""

from __future__ import annotations

import json
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from ray import serve

from benchmarks._report import figure
from benchmarks._session import bench_session
from rlm.auth.keys import load_signing_key
from rlm.auth.tokens import issue_token
from rlm.config import EngineSettings, ServerSettings, Settings
from serve_app.deployment import build_app

__all__ = ["run"]

ROOT = Path(__file__).resolve().parents[1]
SDK = ROOT / "sdk" / "typescript"
NODE_SIDE = Path(__file__).with_name("ts_sdk_execute.mjs")

BODY = {
    "type": "recursive",
    "description": "10-item sum",
    "input": {"items": list(range(1, 11)), "operation": "sum"},
}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _build_sdk() -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("ts_sdk: npm is not installed (scripts/system-deps.sh installs it)")
    if not (SDK / "node_modules" / ".package-lock.json").is_file():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=SDK, check=True)
    subprocess.run([npm, "run", "build", "--silent"], cwd=SDK, check=True)
    return SDK / "dist" / "index.js"


def _curl_block(
    url: str, tokens: list[str], body: Path, start: int, n: int, work: Path
) -> list[float]:
    """``n`` requests in one curl process (one kept-alive connection); each one's ms."""
    config = work / "curl.cfg"
    lines = []
    for i in range(n):
        if i:
            lines.append("next")
        token = tokens[(start + i) % len(tokens)]
        lines += [
            f'url = "{url}"',
            f'header = "Authorization: Bearer {token}"',
            'header = "Content-Type: application/json"',
            'header = "Accept: application/json"',
            f'header = "Idempotency-Key: {uuid.uuid4()}"',
            f'data-binary = "@{body}"',
            'output = "/dev/null"',
            'write-out = "%{http_code} %{time_total}\\n"',
            "silent",
        ]
    config.write_text("\n".join(lines) + "\n")
    out = subprocess.run(
        ["curl", "--config", str(config)], capture_output=True, text=True, check=True
    ).stdout.split()
    codes, times = out[0::2], out[1::2]
    if set(codes) != {"200"}:
        raise RuntimeError(f"curl got {sorted(set(codes))}")
    return [float(t) * 1000 for t in times]


def _node_block(
    sdk: Path, base: str, tokens: Path, body: Path, warmup: int, n: int
) -> tuple[list[float], list[float]]:
    """``n`` SDK executes alternating with ``n`` bare fetches, in one Node process; ms each."""
    node = shutil.which("node")
    if node is None:
        raise SystemExit("ts_sdk: node is not installed")
    args = [node, str(NODE_SIDE), sdk.as_uri(), base, str(tokens), str(body), str(warmup), str(n)]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    samples = json.loads(out.strip().splitlines()[-1])
    return samples["sdkMs"], samples["fetchMs"]


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Run the TypeScript SDK figure."""
    sdk = _build_sdk()
    with bench_session("rlm-bench-ts-sdk-") as state, tempfile.TemporaryDirectory() as tmp:
        return _figures(state, Path(tmp), sdk, quick)


def _figures(state: Path, work: Path, sdk: Path, quick: bool) -> list[dict[str, Any]]:
    port = _port()
    settings = Settings(
        state_dir=state,
        engine=EngineSettings(agents=2),
        server=ServerSettings(port=port, min_replicas=1, max_replicas=1),
    )
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        serve.run(build_app(settings), name="rlm", route_prefix="/", blocking=False)
        key = load_signing_key(settings.auth, settings.state_dir, settings.env)
        tokens = [
            issue_token(
                f"bench-{i}", ["rlm:execute"], "enterprise", settings=settings.auth, key=key
            )
            for i in range(64)
        ]
        base = f"http://127.0.0.1:{port}/v1"
        url = f"{base}/execute"
        deadline = time.monotonic() + 120
        while True:
            try:
                headers = {"Authorization": f"Bearer {tokens[0]}"}
                httpx.post(url, json=BODY, headers=headers, timeout=10).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        body, token_file = work / "body.json", work / "tokens.json"
        body.write_text(json.dumps(BODY))
        token_file.write_text(json.dumps(tokens))
        blocks, per_block = (2, 50) if quick else (4, 100)
        ours: list[float] = []
        curl: list[float] = []
        bare: list[float] = []
        for b in range(blocks):
            # Each side warms its connection (and Node its JIT) before the block it times.
            curl += _curl_block(url, tokens, body, b * per_block, per_block + 10, work)[10:]
            sdk_ms, fetch_ms = _node_block(sdk, base, token_file, body, 50, per_block)
            ours += sdk_ms
            bare += fetch_ms
        p50_ours, p50_curl = statistics.median(ours), statistics.median(curl)
        p50_bare = statistics.median(bare)
        return [
            figure(
                "TS SDK client.execute p50 vs curl p50 (POST /v1/execute, 10-item sum)",
                p50_ours,
                p50_curl,
                unit="ms",
                ratio=p50_ours / p50_curl,
                goal="<= 1.1x",
                limit="1.5x",
                baseline_name="curl, one kept-alive connection, its own time_total per request",
                samples=len(ours),
                p90Ours=round(statistics.quantiles(ours, n=10)[-1], 3),
                p90Baseline=round(statistics.quantiles(curl, n=10)[-1], 3),
            ),
            # Where the difference lies: the SDK's own code, or Node's fetch under it.
            figure(
                "TS SDK client.execute p50 vs Node's bare fetch p50 (same request)",
                p50_ours,
                p50_bare,
                unit="ms",
                ratio=p50_ours / p50_bare,
                goal="report",
                limit="—",
                baseline_name="fetch with the same headers and body, in Node",
                samples=len(bare),
            ),
        ]
    finally:
        serve.shutdown()


if __name__ == "__main__":
    run()
