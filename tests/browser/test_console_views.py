"""The web console's views checked one by one in Chromium against a live ``rlm serve``: the
task list's cells and its type and time filters, a failed task's tree and error, an automated
accessibility check (axe-core) of every view at a laptop and a wide-screen size, the keyboard
alone, where the token is kept, and — over every page all the browser tests opened — that
the console called nothing but the public API of its own origin and no token reached a URL
or a log.

Runs after ``test_console.py`` on the same service (``conftest.py``), with tenants of its own.
"""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect

from rlm_hypervisor import RLMClient
from tests import rlm_script
from tests.browser.harness import ARTIFACTS, Console
from tests.eval_report import report_json

pytestmark = pytest.mark.integration

#: A laptop's and a wide screen's viewport.
SIZES = {"laptop": (1280, 800), "wide": (1920, 1080)}
#: The rules axe-core runs: WCAG 2.0 and 2.1, levels A and AA (contrast included).
WCAG = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}
#: The failed-node colour of the tree (``tree.js``), as the canvas holds it.
FAILED_RGB = (198, 40, 40)
_RED_PIXELS = (
    "(c) => {"
    f"  const [r, g, b] = {list(FAILED_RGB)};"
    """
  const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i] === r && d[i + 1] === g && d[i + 2] === b) n++;
  return n;
}"""
)


@dataclass(frozen=True)
class Tenant:
    """A manager of its own org and team, and the tasks and evaluation run it made."""

    sub: str
    org: str
    team: str
    token: str
    tree: str  # a completed recursive sum
    failed: str  # a task whose leaves raise
    lm: str  # a parallel llm_map (tokens and cost)
    rlm: str  # an RLM task with a cell and a sub-call batch
    run_id: str


def _sdk(console: Console, token: str) -> RLMClient:
    return RLMClient(api_key=token, base_url=console.served.base, timeout=90)


def _rlm_root(turn: rlm_script.Turn) -> str:
    return (
        "Reading the lines.\n```repl\nnotes = llm_query_batched(context[:2])\nprint(notes)\n"
        "answer['content'] = str(len(notes)) + ' notes'\nanswer['ready'] = True\n```"
    )


@pytest.fixture(scope="module")
def tenant(console: Console) -> Tenant:
    suffix = uuid.uuid4().hex[:6]
    sub, org, team = f"viewer-{suffix}", f"views-org-{suffix}", f"views-team-{suffix}"
    scopes = "rlm:execute rlm:read rlm:quota:read rlm:quota:manage"
    # Enterprise: the views make more than the user tier's 60 requests a minute.
    token = console.token(sub=sub, scopes=scopes, tier="enterprise", org=org, team=team)
    with _sdk(console, token) as sdk:
        sdk.quotas.create_org(
            {"orgId": org, "name": "Views Org", "agents": 5000, "computeHours": 100}
        )
        sdk.quotas.create_team(
            {
                "teamId": team,
                "teamName": "Views Team",
                "totalAgentPool": 900,
                "totalComputeHours": 9,
            }
        )
        sdk.quotas.set_member(
            team, sub, role="lead", agents_allocated=200, compute_hours_allocated=1.0
        )
        tree = sdk.execute(
            {
                "type": "recursive",
                "description": "views: a tree",
                "input": {"items": list(range(64)), "operation": "sum"},
                "options": {"leafSize": 1, "fanout": 4},
            }
        ).task_id
        failed = sdk.submit(
            {
                "type": "recursive",
                "description": "views: leaves that raise",
                "input": {"items": list(range(16)), "operation": "explode"},
                "options": {"leafSize": 1, "fanout": 4},
            }
        )
        assert sdk.tasks.wait(failed, timeout=90).status == "failed"
        lm = sdk.execute(
            {
                "type": "parallel",
                "description": "views: an LM map",
                "input": {
                    "items": ["alpha", "beta", "gamma"],
                    "operation": "llm_map",
                    "params": {"prompt": "Say {chunk}"},
                },
            }
        ).task_id
        rlm = sdk.submit(
            {
                "type": "recursive",
                "description": "views: an RLM",
                "input": {
                    "operation": "rlm",
                    "query": rlm_script.script(_rlm_root),
                    "context": ["one", "two", "three"],
                },
                "options": {"memo": False},
            }
        )
        assert sdk.tasks.wait(rlm, timeout=90).status == "completed"
        run_id = sdk.evaluations.record(report_json()).run_id
    return Tenant(sub, org, team, token, tree, failed, lm, rlm, run_id)


def _shot(page: Page, name: str) -> None:
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000, f"{path} looks empty"


def _duration(ms: float) -> str:
    """``dom.js``'s ``duration`` for the durations a test task takes (under a minute)."""
    return f"{math.floor(ms + 0.5)} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


def test_each_task_row_shows_its_figures_and_type_and_time_filter_on_the_server(
    console: Console, tenant: Tenant
) -> None:
    with _sdk(console, tenant.token) as sdk:
        lm = sdk.tasks.get(tenant.lm).result
        tree = sdk.tasks.get(tenant.tree).result
    assert lm is not None and lm.usage is not None and lm.usage.cost_usd > 0
    assert tree is not None
    with console.page() as page:
        console.sign_in(page, tenant.token)
        rows = page.locator("tr[data-task]")
        expect(rows).to_have_count(4)
        # Columns: task, status, progress, agent calls, depth, duration, tokens, cost, created.
        for result in (lm, tree):
            u = result.usage
            tokens, cost = (
                ("—", "—")
                if u is None
                else (f"{u.input_tokens + u.output_tokens:,}", f"${u.cost_usd:.4f}")
            )
            cells = page.locator(f'tr[data-task="{result.task_id}"] td')
            expect(cells.nth(1)).to_have_text("completed")
            expect(cells.nth(2)).to_contain_text("100 %")
            expect(cells.nth(3)).to_have_text(f"{result.agent_calls:,}")
            expect(cells.nth(4)).to_have_text(str(result.decomposition_depth))
            expect(cells.nth(5)).to_have_text(_duration(result.execution_time_ms))
            expect(cells.nth(6)).to_have_text(tokens)
            expect(cells.nth(7)).to_have_text(cost)
        assert tree.decomposition_depth == 3  # 64 leaves, fanout 4
        expect(page.locator(f'tr[data-task="{tenant.failed}"] td').nth(1)).to_have_text("failed")

        # Type: the API call carries it and the server answers with the parallel task only.
        with page.expect_request(lambda r: "/v1/tasks?" in r.url and "type=" in r.url) as asked:
            page.get_by_label("Type").select_option("parallel")
        assert parse_qs(urlsplit(asked.value.url).query)["type"] == ["parallel"]
        expect(rows).to_have_count(1)
        expect(page.locator(f'tr[data-task="{tenant.lm}"]')).to_be_visible()
        page.get_by_label("Type").select_option("")
        expect(rows).to_have_count(4)

        # Time: "last hour" asks the server for tasks created since an hour ago.
        with page.expect_request(lambda r: "/v1/tasks?" in r.url and "since=" in r.url) as asked:
            page.get_by_label("Created").select_option("1h")
        since = datetime.fromisoformat(parse_qs(urlsplit(asked.value.url).query)["since"][0])
        hour_ago = datetime.now(UTC) - timedelta(hours=1)
        assert abs((since - hour_ago).total_seconds()) < 60, since
        expect(rows).to_have_count(4)
        assert "since" not in page.url and "type" not in page.url


def test_a_failed_task_marks_its_tree_and_shows_the_error(console: Console, tenant: Tenant) -> None:
    with _sdk(console, tenant.token) as sdk:
        result = sdk.tasks.get(tenant.failed).result
    assert result is not None and result.error is not None
    with console.page() as page:
        console.sign_in(page, tenant.token)
        page.goto(f"{console.ui}#/task/{tenant.failed}")
        expect(page.locator("#task-status")).to_have_text("failed")
        tree = page.get_by_role("img", name="Recursion tree", exact=False)
        expect(tree).to_have_attribute("aria-label", re.compile(r"; task failed$"))
        error = page.locator(".outcome").get_by_role("alert")
        expect(error).to_contain_text(f"{result.error.code}: {result.error.message}")
        expect(page.get_by_role("button", name="Cancel task")).to_be_disabled()
        page.wait_for_function("window.rlmConsoleStats.frames > 0")
        assert tree.evaluate(_RED_PIXELS) > 0, "no node drawn as failed"
        _shot(page, "task-failed")
        # The control: a completed tree has no failed node.
        page.goto(f"{console.ui}#/task/{tenant.tree}")
        expect(tree).to_have_attribute("aria-label", re.compile(r"; task completed$"))
        assert tree.evaluate(_RED_PIXELS) == 0


def _views(console: Console, tenant: Tenant) -> list[tuple[str, str, str]]:
    """(name, address, a locator that shows the view has loaded)."""
    task = f"{console.ui}#/task/"
    return [
        ("tasks", f"{console.ui}#/tasks", f'tr[data-task="{tenant.lm}"]'),
        ("task-tree", f"{task}{tenant.tree}", "#task-output"),
        ("task-failed", f"{task}{tenant.failed}", ".outcome .error-box"),
        ("task-rlm", f"{task}{tenant.rlm}", ".traj-tree .subcalls"),
        ("quotas", f"{console.ui}#/quotas", '.org section.usage[data-level="org"] svg'),
        ("evaluation-runs", f"{console.ui}#/evals", "table.modes"),
    ]


def _check_view(page: Page, name: str, size: str) -> list[str]:
    """axe-core's WCAG A/AA violations of the page (as text), after checking it fits."""
    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"{name} at {size}: {overflow} px wider than the window"
    _shot(page, f"{name}-{size}")
    results = Axe().run(page, options=WCAG)
    return [results.generate_report()] if results.violations_count else []


@pytest.mark.parametrize("size", list(SIZES))
def test_every_view_passes_axe_and_fits_laptop_and_wide_screens(
    console: Console, tenant: Tenant, size: str
) -> None:
    width, height = SIZES[size]
    problems: list[str] = []
    with console.page(width=width, height=height) as page:
        page.goto(console.ui)
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        problems += _check_view(page, "sign-in", size)
        console.sign_in(page, tenant.token)
        for name, address, ready in _views(console, tenant):
            page.goto(address)
            expect(page.locator(ready).first).to_be_visible(timeout=30_000)
            problems += _check_view(page, name, size)
        # axe found something to check: the rules ran on the last view's elements.
        passes = Axe().run(page, options={**WCAG, "resultTypes": ["passes"]}).response
        assert {"color-contrast", "label", "image-alt"} & {p["id"] for p in passes["passes"]}
    assert not problems, "\n".join(problems)


def _focused(page: Page) -> str:
    return str(page.evaluate("document.activeElement.textContent.trim()"))


def _tab_to(page: Page, text: str, key: str = "Tab", limit: int = 40) -> None:
    for _ in range(limit):
        page.keyboard.press(key)
        if _focused(page) == text:
            return
    raise AssertionError(f"{key} never reached {text!r}")


def test_the_keyboard_alone_signs_in_moves_between_views_and_opens_a_task(
    console: Console, tenant: Tenant
) -> None:
    with console.page(*SIZES["laptop"]) as page:
        page.goto(console.ui)
        assert page.evaluate("document.activeElement.id") == "token"
        page.keyboard.insert_text(tenant.token)
        page.keyboard.press("Tab")  # "Keep it for this browser tab"
        page.keyboard.press("Tab")
        assert _focused(page) == "Sign in"
        page.keyboard.press("Enter")
        expect(page.locator(f'tr[data-task="{tenant.tree}"]')).to_be_visible()
        # Each view's heading takes the focus; the navigation is just before it.
        assert _focused(page) == "Tasks"
        _tab_to(page, "Quotas", key="Shift+Tab")
        outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        assert outline == "solid", "the focused link shows no focus ring"
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", name="Quotas", exact=True)).to_be_focused()
        _tab_to(page, "Tasks", key="Shift+Tab")
        page.keyboard.press("Enter")
        expect(page.locator(f'tr[data-task="{tenant.tree}"]')).to_be_visible()
        _tab_to(page, tenant.tree)
        page.keyboard.press("Enter")
        expect(page.locator("#task-percent")).to_have_text("100 %")
        expect(page.get_by_role("heading", name=f"Task {tenant.tree}")).to_be_focused()
        # The skip link leads past the navigation into the view (and stays on it).
        page.locator("a.skip").focus()
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.id") == "main"
        expect(page.locator("#task-percent")).to_have_text("100 %")
        assert page.url.endswith(f"#/task/{tenant.tree}")


def test_the_token_stays_in_memory_or_the_tabs_session_storage_only(
    console: Console, tenant: Tenant
) -> None:
    stored = "() => [sessionStorage.getItem('rlm.console.token'), localStorage.length]"
    with console.page() as page:
        console.sign_in(page, tenant.token)  # "Keep it for this browser tab" is ticked
        assert page.evaluate(stored) == [tenant.token, 0]
        assert page.context.cookies() == []
        page.reload()  # the tab keeps it
        expect(page.locator(f'tr[data-task="{tenant.tree}"]')).to_be_visible()
        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        assert page.evaluate(stored) == [None, 0]
    with console.page() as page:
        page.goto(console.ui)
        page.get_by_label("Bearer token").fill(tenant.token)
        page.get_by_label("Keep it for this browser tab").uncheck()
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator(f'tr[data-task="{tenant.tree}"]')).to_be_visible()
        assert page.evaluate(stored) == [None, 0]  # in the page's memory only
        assert page.context.cookies() == []
        page.reload()
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def _operations(console: Console) -> list[tuple[str, re.Pattern[str]]]:
    """The public API's operations: (method, a pattern of its path)."""
    doc = httpx.get(console.origin + "/openapi.json", timeout=30).json()
    out = []
    for path, item in doc["paths"].items():
        pattern = re.compile(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$")
        out += [(method.upper(), pattern) for method in item if method != "parameters"]
    return out


def test_every_request_was_the_public_api_of_the_origin_and_no_token_was_logged(
    console: Console, tenant: Tenant
) -> None:
    # Runs last, so it also reads what every page of the other browser tests asked for and
    # wrote; it opens every view itself first, so it checks something when run alone too.
    with console.page() as page:
        console.sign_in(page, tenant.token)
        for _, address, ready in _views(console, tenant):
            page.goto(address)
            expect(page.locator(ready).first).to_be_visible(timeout=30_000)
        with page.expect_download() as download:
            page.goto(f"{console.ui}#/task/{tenant.rlm}")
            page.get_by_role("button", name="Download trajectory (JSONL)").click()
        assert download.value.suggested_filename.endswith(".jsonl")
    operations = _operations(console)
    origin = urlsplit(console.origin)
    api_calls = 0
    for method, url, authorization in console.requests:
        parts = urlsplit(url)
        if parts.scheme in {"data", "blob"}:  # made in the page (the icon, the JSONL file)
            assert parts.scheme == "data" or url.startswith(f"blob:{console.origin}/"), url
            continue
        assert (parts.scheme, parts.netloc) == (origin.scheme, origin.netloc), url
        if parts.path.startswith("/ui/"):
            assert authorization is None, f"the token went with a static file: {url}"
            continue
        assert any(m == method and p.match(parts.path) for m, p in operations), (method, url)
        assert authorization is not None and authorization.startswith("Bearer "), url
        api_calls += 1
    assert api_calls > 20
    tokens = set(console.issued)
    signatures = {t.rsplit(".", 1)[-1] for t in tokens}
    secrets = tokens | signatures
    for _, url, _ in console.requests:
        assert not any(s in url for s in secrets), f"a token in a URL: {url}"
    for message in console.console_messages:
        assert not any(s in message for s in secrets), "a token in the browser's console"
    assert not any(s in console.served.output for s in secrets), "a token in rlm serve's output"
    logs = [p for p in console.log_dir.rglob("*") if p.is_file()]
    text = "\n".join(p.read_text(errors="replace") for p in logs)
    assert "/v1/tasks" in text, f"the replicas' logs were not found in {console.log_dir}"
    assert not any(s in text for s in secrets), "a token in the API replicas' logs"
