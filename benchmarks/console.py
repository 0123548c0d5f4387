"""The web console in the distribution's Chromium (headless) against a live ``rlm serve``.

Two figures, each with a baseline measured in the same run:

* **event → drawn on the page, p50**: for every ``nodes.started`` / ``task.progress`` /
  ``task.completed`` of a 4,096-leaf recursive sum (5,461 agent calls) that happened while the
  page watched, the time from the event's server timestamp to the end of the animation frame
  that drew it
  (``window.rlmConsoleStats.eventToDrawnMs``). Baseline: the same events' server timestamp →
  arrival at the Python SDK's event stream (``RLMClient.tasks.events``), read at the same
  time from the same server: what any client waits before it can act on an event.
* **longest main-thread task while the 4,096-leaf tree renders**, from opening the task's
  page until it shows 100 %: the longest ``RunTask`` of the renderer's main thread in a
  Chrome trace, as wall time and as the thread's CPU time (on a loaded machine the wall time
  also counts the time the thread waited for a core). Beside them: the browser's own
  ``PerformanceObserver`` ``longtask`` entries (reported over 50 ms only; none means ≤ 50 ms),
  the longest gap between animation frames, and the longest ``draw()`` of the tree.
  Baseline: the same while the same page shows (and refreshes) the Tasks list as the same
  task runs unwatched: the service loads the machine alike, the page draws no tree.
  Both are counted once the page has loaded and settled (loading the page's modules is
  neither view's work); one warm-up run comes first and is reported apart.

Run: ``python -m benchmarks console [--quick]`` (needs ``/usr/bin/chromium``; see
``scripts/system-deps.sh``). The console and the SDK read the clock of one machine, so their
timestamps compare directly.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from benchmarks._report import figure
from rlm_hypervisor import RLMClient

__all__ = ["run"]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Collects the browser's long tasks from the first script of every page load on.
_LONGTASKS = """
window.__longtasks = [];
window.__mark = 0;
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.__longtasks.push([e.startTime, e.duration]);
}).observe({ type: "longtask", buffered: true });
// Gaps between animation frames: a main-thread task delays the next frame by its length, and
// unlike the longtask entries (over 50 ms only) this sees every size.
window.__gaps = [];
let last = performance.now();
requestAnimationFrame(function tick(t) {
  window.__gaps.push([last, t - last]);
  last = t;
  requestAnimationFrame(tick);
});
"""
#: The longest task since the mark (0: none over the browser's 50 ms threshold).
_LONGEST = """() => {
  const since = (entries) => entries.filter(([t]) => t >= window.__mark).map(([, d]) => d);
  return [Math.max(0, ...since(window.__longtasks)), Math.max(0, ...since(window.__gaps))];
}"""
#: Chrome's trace categories that record the main thread's tasks.
_TRACE = ["devtools.timeline", "disabled-by-default-devtools.timeline"]
_TREE = {
    "type": "recursive",
    "description": "console benchmark: 4,096 leaves",
    "input": {"items": list(range(4096)), "operation": "sum"},
    "options": {"leafSize": 1, "fanout": 4},
}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _serve(state: Path) -> Iterator[str]:
    """``rlm serve`` in its own process group; its origin."""
    port = _port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RLM_", "RAY_"))}
    env |= {"RLM_STATE_DIR": str(state), "RLM_ENGINE__AGENTS": "2"}
    log = (state.parent / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "rlm", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    origin = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"rlm serve exited; see {log.name}")
            try:
                if httpx.get(f"{origin}/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("rlm serve did not answer /v1/health within 180 s")
            time.sleep(1)
        yield origin
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def _token(state: Path, sub: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RLM_", "RAY_"))}
    env["RLM_STATE_DIR"] = str(state)
    out = subprocess.run(
        [sys.executable, "-m", "rlm", "token", "--sub", sub, "--tier", "enterprise"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


#: The events the tree view draws (and times), so both sides count the same ones.
_DRAWN = ("nodes.started", "task.progress", "task.completed")


def _sdk_lags(client: RLMClient, task_id: str, out: list[float]) -> None:
    """Server timestamp → arrival at the SDK, for the events after the stream opened (the
    ones before it are replayed, not watched)."""
    opened = time.time()
    for event in client.tasks.events(task_id):
        now = time.time()
        ts = event.timestamp.timestamp() if isinstance(event.timestamp, datetime) else now
        if event.event in _DRAWN and ts >= opened:
            out.append((now - ts) * 1000)


def _longest_tasks(trace: bytes) -> tuple[float, float]:
    """The longest task of the page's main thread in a Chrome trace: (wall ms, CPU ms).

    ``RunTask`` events of the renderer's main thread carry ``dur`` (wall) and ``tdur`` (the
    thread's CPU time): on a loaded machine the two differ by the time the thread waited for a
    core.
    """
    data = json.loads(trace)
    events = data["traceEvents"] if isinstance(data, dict) else data
    main = {
        (e["pid"], e["tid"])
        for e in events
        if e.get("ph") == "M"
        and e.get("name") == "thread_name"
        and e.get("args", {}).get("name") == "CrRendererMain"
    }
    tasks = [
        e
        for e in events
        if e.get("name") == "RunTask" and e.get("ph") == "X" and (e["pid"], e["tid"]) in main
    ]
    wall = max((e.get("dur", 0) for e in tasks), default=0) / 1000
    cpu = max((e.get("tdur", 0) for e in tasks), default=0) / 1000
    return wall, cpu


def _measure(origin: str, token: str, runs: int) -> dict[str, Any]:
    from playwright.sync_api import expect, sync_playwright

    page_lags: list[float] = []
    sdk_lags: list[float] = []
    tree_longest: list[list[float]] = []
    draws: list[float] = []
    list_longest: list[list[float]] = []
    with (
        sync_playwright() as pw,
        RLMClient(api_key=token, base_url=f"{origin}/v1", timeout=120) as client,
    ):
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1440, "height": 900})
            context.add_init_script(_LONGTASKS)
            page = context.new_page()
            page.goto(f"{origin}/ui/")
            page.get_by_label("Bearer token").fill(token)
            page.get_by_role("button", name="Sign in").click()
            expect(page.locator("table.tasks")).to_be_visible()
            # One warm-up run first (the browser compiles the page's code and fills its
            # caches); its figures are reported apart.
            for _ in range(runs + 1):
                # Baseline: the Tasks list, while the same task runs unwatched.
                page.goto(f"{origin}/ui/#/tasks")
                page.reload()
                expect(page.locator("table.tasks")).to_be_visible()
                page.wait_for_timeout(1000)
                page.evaluate("window.__mark = performance.now()")
                browser.start_tracing(page=page, categories=_TRACE)
                # The same task runs meanwhile: the service loads the machine as much as it
                # does while the tree is watched.
                busy = client.execute(_TREE, wait=False).task_id
                page.get_by_role("button", name="Refresh").click()
                client.tasks.wait(busy)
                page.get_by_role("button", name="Refresh").click()
                page.wait_for_timeout(300)
                list_longest.append(
                    [*page.evaluate(_LONGEST), *_longest_tasks(browser.stop_tracing())]
                )
                # The tree: the page is loaded and settled, then the task is submitted and
                # its view opened (the page's stream replays what it missed).
                page.reload()
                expect(page.locator("table.tasks")).to_be_visible()
                page.wait_for_timeout(1000)
                page.evaluate("window.__mark = performance.now()")
                browser.start_tracing(page=page, categories=_TRACE)
                task_id = client.execute(_TREE, wait=False).task_id
                lags: list[float] = []
                watcher = threading.Thread(target=_sdk_lags, args=(client, task_id, lags))
                watcher.start()
                page.goto(f"{origin}/ui/#/task/{task_id}")
                expect(page.locator("#task-percent")).to_have_text("100 %", timeout=120_000)
                page.wait_for_timeout(300)
                traced = _longest_tasks(browser.stop_tracing())
                watcher.join(60)
                stats = page.evaluate("window.rlmConsoleStats")
                # Events that happened before the page's stream connected were replayed,
                # not watched: their lag is the page's load time. Left out on both sides.
                page_lags += _watched(stats, stats["streamOpenedMs"])
                sdk_lags += [lag for lag in lags if lag >= 0]
                tree_longest.append([*page.evaluate(_LONGEST), *traced])
                draws.append(stats["maxDrawMs"])
        finally:
            browser.close()
    return {
        "page": page_lags,
        "sdk": sdk_lags,
        "treeLongest": tree_longest,
        "draws": draws,
        "listLongest": list_longest,
    }


def _watched(stats: dict[str, Any], opened_ms: float) -> list[float]:
    """The page's lags of the events that happened after its stream connected."""
    pairs = zip(stats["eventToDrawnMs"], stats["eventMs"], strict=True)
    return [lag for lag, at in pairs if at >= opened_ms]


def run(quick: bool = False) -> None:
    """Print the console's figures (see the module docstring)."""
    runs = 3 if quick else 8
    with tempfile.TemporaryDirectory(prefix="rlm-console-bench-") as tmp:
        state = Path(tmp) / "state"
        with _serve(state) as origin:
            token = _token(state, "bench-console")
            m = _measure(origin, token, runs)
    page_p50 = statistics.median(m["page"])
    sdk_p50 = statistics.median(m["sdk"])
    figure(
        "console: event -> drawn on the page (live 4,096-leaf tree), p50",
        page_p50,
        sdk_p50,
        unit="ms",
        ratio=page_p50 / sdk_p50 if sdk_p50 else float("inf"),
        goal="<= 100 ms",
        limit="500 ms",
        baseline_name="the same events' server timestamp -> arrival at the Python SDK stream",
        samples=len(m["page"]),
        sdkSamples=len(m["sdk"]),
        p95=round(sorted(m["page"])[int(0.95 * (len(m["page"]) - 1))], 3),
    )
    # Warm-up run first, left out of the figures. Each run's row: the longest longtask entry
    # (0: none over 50 ms), frame gap, traced task's wall time and CPU time.
    tree, listed = m["treeLongest"][1:], m["listLongest"][1:]

    def worst(rows: list[list[float]], column: int) -> float:
        return max(row[column] for row in rows)

    extra = {
        "runs": runs,
        "longtaskMs": worst(tree, 0),
        "baselineLongtaskMs": worst(listed, 0),
        "frameGapMs": round(worst(tree, 1), 1),
        "baselineFrameGapMs": round(worst(listed, 1), 1),
        "perRunWallMs": [round(row[2], 1) for row in tree],
        "perRunCpuMs": [round(row[3], 1) for row in tree],
        "warmup": [round(x, 1) for x in m["treeLongest"][0]],
        "longestDrawMs": round(max(m["draws"][1:]), 3),
    }
    for label, column in (("wall", 2), ("CPU", 3)):
        ours, base = worst(tree, column), worst(listed, column)
        figure(
            f"console: longest main-thread task while a 4,096-leaf tree renders ({label} time)",
            ours,
            base,
            unit="ms",
            ratio=ours / base if base else float("inf"),
            goal="<= 50 ms",
            limit="200 ms",
            baseline_name="the same page on its Tasks list while the same task runs",
            **extra,
        )


if __name__ == "__main__":
    run(quick="--quick" in sys.argv)
