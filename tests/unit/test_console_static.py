"""The web console's files and headers, without Ray or a browser (``tests/browser`` drives it
in Chromium against a live service)."""

from __future__ import annotations

import asyncio
import re
import tomllib
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from rlm.tasks.record import TaskRecord
from serve_app.console import CONSOLE_HEADERS, install_console, static_dir

ROOT = Path(__file__).resolve().parents[2]


def _get(app: Any, path: str) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get(path)

    return asyncio.run(go())


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/v1/ping")
    async def ping() -> dict[str, str]:
        return {"ok": "yes"}

    install_console(app)
    return app


def test_console_answers_carry_the_security_headers_and_api_answers_do_not() -> None:
    app = _app()
    page = _get(app, "/ui/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for name, value in CONSOLE_HEADERS.items():
        assert page.headers[name] == value
    csp = page.headers["content-security-policy"]
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
    assert "frame-ancestors 'none'" in csp and "connect-src 'self'" in csp
    assert _get(app, "/ui").headers["location"] == "/ui/"
    assert _get(app, "/ui/missing.js").status_code == 404
    api = _get(app, "/v1/ping")
    assert api.json() == {"ok": "yes"}
    assert not {k.lower() for k in CONSOLE_HEADERS} & {k.lower() for k in api.headers}


def test_every_module_the_page_loads_is_shipped_and_nothing_comes_from_elsewhere() -> None:
    folder = static_dir()
    html = (folder / "index.html").read_text()
    wanted = set(re.findall(r'(?:src|href)="([^"#:]+)"', html))
    seen: set[str] = set()
    while wanted:
        name = wanted.pop()
        seen.add(name)
        text = (folder / name).read_text()  # a missing file fails here
        if name.endswith(".js"):
            wanted |= set(re.findall(r'from "\./([^"]+)"', text)) - seen
    assert {"main.js", "api.js", "tree.js", "trajectory.js", "console.css"} <= seen
    for path in folder.iterdir():
        text = path.read_text()
        # No network at run time: no absolute URLs to load, no inline handlers the CSP blocks.
        assert not re.search(r"(src|href)=\"https?://", text), path.name
        assert "innerHTML" not in text, path.name  # untrusted text goes in as text
        assert not re.search(r"<script(?![^>]*\bsrc=)", text), path.name


def test_the_console_files_are_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["serve_app"]
    for path in static_dir().iterdir():
        relative = path.relative_to(ROOT / "serve_app").as_posix()
        assert any(fnmatch(relative, p) for p in patterns), relative


def test_task_status_names_type_operation_and_description() -> None:
    from datetime import UTC, datetime

    record = TaskRecord(
        task_id="task-1",
        status="running",
        created_at=datetime.now(UTC),
        type="recursive",
        description="x" * 500,
        priority="normal",
        owner_id="alice",
        request={"input": {"operation": "rlm", "query": "q"}},
        planned_calls=3,
    )
    wire = record.to_status().to_wire()
    assert (wire["type"], wire["operation"]) == ("recursive", "rlm")
    assert wire["description"] == "x" * 200
    bare = TaskRecord(
        task_id="task-2",
        status="pending",
        created_at=datetime.now(UTC),
        type="other",
        description="",
        priority="normal",
        owner_id="alice",
        request={"input": [1, 2]},
    ).to_status()
    assert bare.type is None and bare.operation is None
