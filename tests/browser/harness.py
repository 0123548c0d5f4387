"""The browser tests' parts: a live ``rlm serve``, tokens signed with its key, and the
distribution's Chromium driven by Playwright.

Playwright never downloads a browser here (no ``playwright install``): it launches
``/usr/bin/chromium``, which ``scripts/system-deps.sh`` installs from the distribution's
packages. The browser is started with everything that would reach the network turned off.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.api.serve_process import Served, free_port, rlm_serve
from tests.support import state_dir_token

__all__ = [
    "ARTIFACTS",
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "Console",
    "chromium",
    "served_console",
]

#: The distribution's Chromium.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # the tests run as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Screenshots of every view (git-ignored; CI keeps the folder as the run's artifacts).
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"


@dataclass
class Console:
    """A running service and what a test needs to reach it as several people."""

    served: Served
    state_dir: Path
    browser: Browser
    console_errors: list[str] = field(default_factory=list)
    #: Every message any page wrote to the browser's console.
    console_messages: list[str] = field(default_factory=list)
    #: Every request any page made: (method, URL, its Authorization header or None).
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    #: Every token :meth:`token` made (to look for them where they must never be).
    issued: list[str] = field(default_factory=list)

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return self.served.base.removesuffix("/v1")

    @property
    def ui(self) -> str:
        """The console's address."""
        return f"{self.origin}/ui/"

    def token(
        self,
        sub: str | None = None,
        scopes: str = "rlm:execute rlm:read rlm:quota:read",
        tier: str = "user",
        **claims: Any,
    ) -> str:
        """A token signed with the service's own key (as ``rlm token`` makes one)."""
        token = state_dir_token(self.state_dir, sub, scopes, tier, **claims)
        self.issued.append(token)
        return token

    @property
    def log_dir(self) -> Path:
        """Where the API replicas write their logs (``RLM_LOG_DIR``, access logs included)."""
        return self.state_dir.parent / "logs"

    @contextmanager
    def page(self, width: int = 1440, height: int = 900) -> Iterator[Page]:
        """A fresh browser context (its own session storage) and page; console messages and
        requests are collected in :attr:`console_errors`, :attr:`console_messages` and
        :attr:`requests`."""
        context = self.browser.new_context(
            viewport={"width": width, "height": height}, accept_downloads=True
        )
        page = context.new_page()
        page.on(
            "console",
            lambda m: self.console_errors.append(m.text) if m.type == "error" else None,
        )
        page.on("pageerror", lambda e: self.console_errors.append(f"page error: {e}"))
        page.on("console", lambda m: self.console_messages.append(m.text))
        page.on(
            "request",
            lambda r: self.requests.append((r.method, r.url, r.headers.get("authorization"))),
        )
        try:
            yield page
        finally:
            context.close()

    def sign_in(self, page: Page, token: str) -> None:
        """Open the console and sign in with ``token``; waits for the tasks view."""
        page.goto(self.ui)
        page.get_by_label("Bearer token").fill(token)
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator("table.tasks")).to_be_visible()


@contextmanager
def chromium() -> Iterator[Browser]:
    """The distribution's Chromium, headless, with nothing reaching the network."""
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def served_console(tmp: Path, lm_url: str, *, agents: int = 2) -> Iterator[tuple[Served, Path]]:
    """``rlm serve`` with the test operations and ``lm_url`` as its LM provider (priced, so
    tasks cost something), its replicas logging under ``tmp/logs``."""
    state = tmp / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RLM_", "RAY_"))}
    env |= {
        "RLM_STATE_DIR": str(state),
        "RLM_ENGINE__AGENTS": str(agents),
        "RLM_OPERATIONS": '["tests.integration.ops:OPERATIONS"]',
        "RLM_LM__BASE_URL": lm_url,
        "RLM_LM__API_KEY": "test-key",
        "RLM_LM__MODEL": "fake-model",
        # USD per million tokens: high enough that a few fake tokens show as a cost.
        "RLM_LM__INPUT_PRICE_PER_MTOK": "1000",
        "RLM_LM__OUTPUT_PRICE_PER_MTOK": "2000",
        "RLM_LOG_DIR": str(tmp / "logs"),
    }
    with rlm_serve(env, free_port()) as served:
        yield served, state
