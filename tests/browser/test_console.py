"""The web console in a real browser (the distribution's Chromium, headless) against a live
``rlm serve``: sign in, a task's tree drawn live to 100 %, cancel from the page, task filters
run by the server with "Load more", running nodes told from pending ones, an RLM task's
cells and sub-calls appearing while it runs, another tenant seeing none of it, quotas and
usage over time, evaluation runs recorded in the API. Each view's screenshot is saved under
``test-artifacts/console/``.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from rlm.eval.report import ModeSummary
from rlm_hypervisor import RLMClient
from serve_app.console import CONSOLE_HEADERS
from tests import rlm_script
from tests.browser.harness import ARTIFACTS, Console
from tests.eval_report import report_json

pytestmark = pytest.mark.integration

#: Tasks the first tenant ran, for the other tenant to look for.
_SEEN: dict[str, str] = {}


def _shot(page: Page, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000, f"{path} looks empty"
    return path


def _sdk(console: Console, token: str) -> RLMClient:
    return RLMClient(api_key=token, base_url=console.served.base, timeout=60)


def _no_csp_violations(console: Console) -> None:
    blocked = [e for e in console.console_errors if "Content Security Policy" in e]
    assert not blocked, blocked
    crashed = [e for e in console.console_errors if e.startswith("page error")]
    assert not crashed, crashed


def test_the_console_is_served_with_strict_headers_and_v1_is_unchanged(console: Console) -> None:
    page = httpx.get(console.ui, timeout=10)
    assert page.status_code == 200 and '<script type="module" src="main.js">' in page.text
    for name, value in CONSOLE_HEADERS.items():
        assert page.headers[name] == value
    assert "'unsafe-inline'" not in page.headers["content-security-policy"]
    script = httpx.get(console.ui + "main.js", timeout=10)
    assert script.headers["content-type"].startswith("text/javascript")
    assert httpx.get(console.origin + "/ui", timeout=10).headers["location"] == "/ui/"
    api = httpx.get(console.served.base + "/health", timeout=10)
    assert "content-security-policy" not in api.headers  # /v1 answers are as they were
    missing = httpx.get(console.ui + "nope.js", timeout=10)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NOT_FOUND"


def test_sign_in_then_a_task_from_the_sdk_grows_to_100_percent(console: Console) -> None:
    org = f"org-{uuid.uuid4().hex[:6]}"
    token = console.token(org=org)
    with console.page() as page:
        page.goto(console.ui)
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        page.get_by_label("Bearer token").fill("not-a-token")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_contain_text("refused the token")
        _shot(page, "sign-in")
        console.sign_in(page, token)
        assert token not in page.url

        with _sdk(console, token) as sdk:
            # A slow tree first, so the page watches it grow: 16 leaves of 0.3 s on 2 agents.
            slow = sdk.submit(
                {
                    "type": "recursive",
                    "description": "slow tree for the console",
                    "input": {
                        "items": list(range(16)),
                        "operation": "slow_sum",
                        "params": {"seconds": 0.3},
                    },
                    "options": {"leafSize": 1, "fanout": 4},
                }
            )
            page.goto(f"{console.ui}#/task/{slow}")
            tree = page.get_by_role("img", name="Recursion tree", exact=False)
            expect(tree).to_have_attribute("aria-label", _contains("of 21 calls finished"))
            expect(page.locator("#task-status")).to_have_text("running", timeout=30_000)
            expect(page.locator("#task-percent")).to_have_text("100 %", timeout=60_000)
            expect(tree).to_have_attribute("aria-label", _contains("21 of 21 calls finished"))
            expect(page.locator("#task-output")).to_have_text(str(sum(range(16))))
            frames = page.evaluate("window.rlmConsoleStats.frames")
            assert frames >= 3, "the tree was drawn once, not as it grew"

            big = sdk.submit(
                {
                    "type": "recursive",
                    "description": "4,096 leaves",
                    "input": {"items": list(range(4096)), "operation": "sum"},
                    "options": {"leafSize": 1, "fanout": 4},
                }
            )
            page.goto(f"{console.ui}#/task/{big}")
            expect(page.locator("#task-percent")).to_have_text("100 %", timeout=60_000)
            expect(tree).to_have_attribute("aria-label", _contains("5,461 of 5,461 calls"))
            final = sdk.tasks.get(big)
            assert final.result is not None
            expect(page.locator("#task-output")).to_have_text(str(final.result.output))
            rows = page.locator("table.levels tbody tr")
            expect(rows).to_have_count(final.result.decomposition_depth + 1)
            expect(rows.last.locator("td").first).to_have_text("4,096")
            _shot(page, "task-tree-4096-leaves")
        with console.page(width=1920, height=1080) as wide:
            console.sign_in(wide, token)
            wide.goto(f"{console.ui}#/task/{big}")
            expect(wide.locator("#task-percent")).to_have_text("100 %")
            _shot(wide, "task-tree-wide")

        page.goto(f"{console.ui}#/tasks")
        row = page.locator(f'tr[data-task="{big}"]')
        expect(row).to_contain_text("completed")
        expect(row).to_contain_text("5,461")
        page.get_by_label("Operation").fill("slow_sum")
        expect(page.locator("tr[data-task]")).to_have_count(1)
        expect(page.locator(f'tr[data-task="{slow}"]')).to_be_visible()
        page.get_by_label("Operation").fill("")
        page.get_by_label("Status").select_option("failed")
        expect(page.locator("tr[data-task]")).to_have_count(0)
        page.get_by_label("Status").select_option("")
        expect(page.locator("tr[data-task]")).to_have_count(2)
        _shot(page, "tasks")
    _SEEN["tree"] = big
    _SEEN["token"] = token
    _SEEN["org"] = org
    _no_csp_violations(console)


def test_cancel_a_running_task_from_the_page(console: Console) -> None:
    token = console.token()
    with _sdk(console, token) as sdk, console.page() as page:
        console.sign_in(page, token)
        task = sdk.submit(
            {
                "type": "recursive",
                "description": "to be cancelled",
                "input": {
                    "items": list(range(16)),
                    "operation": "slow_sum",
                    "params": {"seconds": 30},
                },
                "options": {"leafSize": 1, "fanout": 4},
            }
        )
        page.goto(f"{console.ui}#/task/{task}")
        expect(page.locator("#task-status")).to_have_text("running", timeout=30_000)
        cancel = page.get_by_role("button", name="Cancel task")
        expect(cancel).to_be_enabled()
        cancel.focus()
        page.keyboard.press("Enter")  # the keyboard works as well as a mouse
        expect(page.locator("#task-status")).to_have_text("cancelled", timeout=30_000)
        expect(page.get_by_role("status").first).to_contain_text("cancelled")
        tree = page.get_by_role("img", name="Recursion tree", exact=False)
        expect(tree).to_have_attribute("aria-label", _contains("task cancelled"))
        expect(cancel).to_be_disabled()
        assert sdk.tasks.get(task).status == "cancelled"
        _shot(page, "task-cancelled")
    _no_csp_violations(console)


def test_task_filters_run_on_the_server_and_running_nodes_show(console: Console) -> None:
    token = console.token(sub=f"filters-{uuid.uuid4().hex[:6]}", tier="enterprise")
    quick = {
        "type": "parallel",
        "description": "quick",
        "input": {"items": [1, 2, 3], "operation": "sum"},
    }
    with _sdk(console, token) as sdk, console.page() as page:
        done = [sdk.execute(quick).task_id for _ in range(51)]  # one more than a page
        slow = sdk.submit(
            {
                "type": "recursive",
                "description": "running and pending nodes",
                "input": {
                    "items": list(range(16)),
                    "operation": "slow_sum",
                    "params": {"seconds": 30},
                },
                "options": {"leafSize": 1, "fanout": 4},
            }
        )
        try:
            console.sign_in(page, token)
            rows = page.locator("tr[data-task]")
            expect(rows).to_have_count(50)  # the first page
            expect(page.get_by_role("status").first).to_contain_text("more on the server")
            page.get_by_role("button", name="Load more").click()
            expect(rows).to_have_count(52)
            expect(page.get_by_role("button", name="Load more")).to_be_hidden()
            expect(page.locator(f'tr[data-task="{done[0]}"]')).to_be_visible()
            # The status filter is the server's: the API call carries it, the page URL not.
            with page.expect_request(
                lambda r: "/v1/tasks?" in r.url and "status=running" in r.url
            ) as asked:
                page.get_by_label("Status").select_option("running")
            assert asked.value.headers["authorization"] == f"Bearer {token}"
            assert "status" not in page.url and token not in asked.value.url
            expect(rows).to_have_count(1)
            expect(page.locator(f'tr[data-task="{slow}"]')).to_contain_text("running")
            page.get_by_label("Status").select_option("completed")
            expect(rows).to_have_count(50)
            expect(page.locator(f'tr[data-task="{slow}"]')).to_have_count(0)
            _shot(page, "tasks-filtered-on-the-server")

            # The running task's tree: the calls sent are drawn running, the rest pending.
            page.goto(f"{console.ui}#/task/{slow}")
            tree = page.get_by_role("img", name="Recursion tree", exact=False)
            expect(tree).to_have_attribute("aria-label", _contains("0 of 21 calls finished"))
            expect(tree).to_have_attribute("aria-label", re.compile(r"finished, [1-9]\d* running"))
            label = tree.get_attribute("aria-label") or ""
            running = int(re.search(r"finished, (\d+) running", label).group(1))  # type: ignore[union-attr]
            assert running < 16, "some leaves wait for an agent: pending, not running"
            leaves = page.locator("table.levels tbody tr").last
            expect(leaves.locator("td").last).to_have_text(str(running))
            legend = page.get_by_role("list", name="Legend")
            expect(legend).to_contain_text("pending")
            expect(legend).to_contain_text("running")
            swatch = legend.locator(".swatch.s4")
            assert swatch.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(31, 95, 191)"
            _shot(page, "task-running-nodes")
        finally:
            sdk.tasks.cancel(slow)
    _no_csp_violations(console)


def test_an_rlm_task_shows_its_cells_and_sub_calls_as_they_happen(console: Console) -> None:
    release = threading.Event()
    marker = f"CHILD-{uuid.uuid4().hex[:6]}"
    rlm_script.CHILD[marker] = [
        "```repl\nanswer['content'] = 'child saw ' + context[:12]\nanswer['ready'] = True\n```"
    ]

    def second_turn(turn: rlm_script.Turn) -> str:
        # The task waits here, at its second root turn, until the test has seen the first
        # turn's cell and sub-calls on the page: they can only have arrived live.
        release.wait(90)
        prompt = marker + " " + "." * 40
        return (
            f"```repl\nkid = rlm_query({prompt!r})\nprint(kid)\n```\n"
            "```repl\nanswer['content'] = str(len(notes)) + ' notes; ' + kid\n"
            "answer['ready'] = True\n```"
        )

    def root(turn: rlm_script.Turn) -> str:
        if turn.number == 1:
            return (
                "Let me look at the lines.\n```repl\nnotes = llm_query_batched("
                "[l for l in context[:3]])\nprint('first three:', notes)\n"
                # An output too long to show whole: the page shows its head and tail.
                "print('A' * 2500 + 'Z' * 2500)\n```"
            )
        return second_turn(turn)

    query = rlm_script.script(root)
    token = console.token()
    with _sdk(console, token) as sdk, console.page() as page:
        console.sign_in(page, token)
        task = sdk.submit(
            {
                "type": "recursive",
                "description": "an RLM for the console",
                "input": {
                    "operation": "rlm",
                    "query": query,
                    "context": [f"line {i}" for i in range(40)],
                },
                "options": {"maxDepth": 2, "memo": False},
            }
        )
        try:
            page.goto(f"{console.ui}#/task/{task}")
            timeline = page.get_by_role("region", name="RLM trajectory")
            cell = timeline.locator(".cell").first
            expect(cell).to_contain_text("llm_query_batched", timeout=60_000)
            stdout = cell.locator("pre.stdout")
            expect(stdout).to_contain_text("first three:")
            # Truncated: the head and the tail of the 5,000 characters, and where it was cut.
            expect(stdout).to_contain_text(re.compile(r"characters cut\] \.\.\.\nZ+\s*$"))
            assert len(stdout.inner_text()) < 3000
            batch = timeline.locator(".subcalls").first
            expect(batch).to_contain_text("llm_query_batched \u00d7 3")
            # The batch's tokens, latency and cache hits are the ones the API recorded.
            sent = [e.data for e in sdk.tasks.trajectory(task).events if e.event == "rlm.subcalls"]
            assert len(sent) == 1 and sent[0]["count"] == 3 and sent[0]["inputTokens"] > 0
            expect(batch).to_contain_text(
                f"{sent[0]['inputTokens']:,} in / {sent[0]['outputTokens']:,} out tokens"
            )
            expect(batch).to_contain_text(f"{sent[0]['cached']} cached")
            expect(batch).to_contain_text(re.compile(r" \u00b7 \d+(\.\d)? m?s \u00b7 "))
            expect(timeline.locator(".turn").first).to_contain_text("Let me look at the lines.")
            # Still running: the second turn is held until now.
            expect(page.locator("#task-status")).to_have_text("running")
            assert sdk.tasks.get(task).status == "running"
            _shot(page, "rlm-task-live")
        finally:
            release.set()
        expect(page.locator("#task-status")).to_have_text("completed", timeout=60_000)
        child = timeline.locator(".rlm .rlm")
        expect(child).to_contain_text("Child RLM 0.")
        expect(child).to_contain_text("child saw " + marker[:6])
        expect(page.locator("#task-output")).to_contain_text("3 notes; child saw")
        with page.expect_download() as download:
            page.get_by_role("button", name="Download trajectory (JSONL)").click()
        lines = Path(download.value.path()).read_text().splitlines()
        events = [json.loads(line)["event"] for line in lines]
        assert events[-1] == "task.completed"
        assert {"rlm.turn", "rlm.cell", "rlm.subcalls", "rlm.child"} <= set(events)
        assert download.value.suggested_filename == f"{task}.trajectory.jsonl"
        _shot(page, "rlm-task-done")
    _SEEN["rlm"] = task
    _no_csp_violations(console)


def test_another_tenants_token_sees_none_of_it(console: Console) -> None:
    assert {"tree", "rlm"} <= _SEEN.keys(), "runs after the tests that made the tasks"
    token = console.token(sub=f"eve-{uuid.uuid4().hex[:6]}", org="another-org")
    with console.page() as page:
        console.sign_in(page, token)
        expect(page.get_by_role("status").first).to_contain_text("0 of 0 tasks shown")
        expect(page.locator("tr[data-task]")).to_have_count(0)
        _shot(page, "other-tenant-tasks")
        for task_id in (_SEEN["tree"], _SEEN["rlm"]):
            page.goto(f"{console.ui}#/task/{task_id}")
            expect(page.locator("#task-status")).to_have_text("not found")
            expect(page.locator("#task-output")).to_have_count(0)
            expect(page.get_by_role("button", name="Cancel task")).to_be_disabled()
        _shot(page, "other-tenant-task")
    # An admin of the other org sees none of it either; an admin of the first tenant's org
    # sees its org's tasks (as GET /v1/tasks answers an admin).
    admin = "rlm:read rlm:admin"
    with console.page() as page:
        console.sign_in(page, console.token(scopes=admin, tier="admin", org="another-org"))
        expect(page.get_by_role("status").first).to_contain_text("0 of 0 tasks shown")
        expect(page.locator("caption").first).to_contain_text("your org's")
    with console.page() as page:
        console.sign_in(page, console.token(scopes=admin, tier="admin", org=_SEEN["org"]))
        expect(page.locator(f'tr[data-task="{_SEEN["tree"]}"]')).to_be_visible()
        _shot(page, "org-admin-tasks")


def test_quotas_show_the_callers_windows_and_a_managers_team_and_org(console: Console) -> None:
    org = f"org-{uuid.uuid4().hex[:6]}"
    team = f"team-{uuid.uuid4().hex[:6]}"
    boss = f"mgr-{uuid.uuid4().hex[:6]}"
    manager = console.token(
        sub=boss,
        scopes="rlm:execute rlm:read rlm:quota:read rlm:quota:manage",
        org=org,
        team=team,
    )
    with _sdk(console, manager) as sdk:
        sdk.quotas.create_org(
            {"orgId": org, "name": "Console Org", "agents": 5000, "computeHours": 100}
        )
        sdk.quotas.create_org({"orgId": f"{org}-lab", "name": "Lab", "parentId": org})
        sdk.quotas.create_team(
            {
                "teamId": team,
                "teamName": "Console Team",
                "totalAgentPool": 900,
                "totalComputeHours": 9,
            }
        )
        sdk.quotas.set_member(team, "member-one", agents_allocated=100)
        sdk.quotas.set_member(
            team, boss, role="lead", agents_allocated=200, compute_hours_allocated=1.0
        )
        sdk.execute(
            {
                "type": "parallel",
                "description": "use some quota",
                "input": {"items": [1, 2, 3], "operation": "sum"},
            }
        )
        mine = sdk.quotas.get_status()
    assert mine.daily.agents_used > 0
    with console.page() as page:
        console.sign_in(page, manager)
        page.get_by_role("link", name="Quotas").click()
        day = page.get_by_role("region", name="Day window")
        expect(day).to_contain_text(f"{mine.daily.agents_used} / {mine.daily.agents_limit:,}")
        for name, window in (("Week", mine.weekly), ("Month", mine.monthly)):
            region = page.get_by_role("region", name=f"{name} window")
            expect(region).to_contain_text(f"{window.agents_used} / {window.agents_limit:,}")
            expect(region).to_contain_text("resets")
        expect(page.locator(".team")).to_contain_text("Console Team")
        expect(page.locator(".team table.members")).to_contain_text("member-one")
        expect(page.locator(".org .hierarchy")).to_contain_text("Console Org")
        expect(page.locator(".org")).to_contain_text("Lab")
        # Usage over time: the caller's, the team's and (a manager's) the org's, each a chart
        # whose bars add up to what the windows say, with the figures as a table too.
        for level, name in (
            ("user", "Your usage"),
            ("team", f"Team {team}"),
            ("org", f"Org {org}"),
        ):
            panel = page.locator(f'section.usage[data-level="{level}"]')
            chart = panel.locator("svg.usage-chart")
            expect(chart).to_have_attribute(
                "aria-label", _contains(f"{mine.daily.agents_used} agent calls today")
            )
            expect(panel.locator("table tr.total")).to_contain_text(str(mine.daily.agents_used))
            bars = chart.locator("rect.bar")
            drawn = sum(int(a) for a in bars.evaluate_all("els => els.map(e => e.dataset.agents)"))
            assert drawn == mine.daily.agents_used, (level, drawn)
            expect(panel.get_by_label(f"{name}: period")).to_be_visible()
        mine_panel = page.locator('section.usage[data-level="user"]')
        mine_panel.get_by_label("Your usage: period").select_option("monthly")
        expect(mine_panel.locator("svg.usage-chart")).to_have_attribute(
            "aria-label", _contains("this month")
        )
        _shot(page, "quotas-manager")
        # The API decides: another org's tree is refused, and the page says so.
        page.get_by_label("Org id").fill("another-org")
        page.get_by_role("button", name="Show").last.click()
        expect(page.locator(".org")).to_contain_text("may not see it")
    _no_csp_violations(console)


def test_evaluation_runs_from_the_api_side_by_side(console: Console) -> None:
    def summary(mode: str, accuracy: float, p50: float, cost: float) -> ModeSummary:
        return ModeSummary(
            mode, 8, accuracy, 0, p50, p50 * 2, 8, 20, 2, 5000, 300, cost, {"count": accuracy}
        )

    org = f"evals-{uuid.uuid4().hex[:6]}"
    older = report_json(direct_score=0.5)
    newer = {
        **report_json(),
        "modes": {
            m.mode: m.to_json()
            for m in (summary("direct", 0.25, 900.0, 0.0123), summary("rlm", 0.875, 4200.0, 0.0456))
        },
        "results": [],
    }
    # Recorded through the API as `rlm eval record` does (its CLI test runs it for real).
    with _sdk(console, console.token(sub="evaluator", org=org)) as sdk:
        first = sdk.evaluations.record(older)
        second = sdk.evaluations.record(newer)
    with console.page() as page:
        # A colleague of the org sees both runs, the newest first, compared side by side.
        console.sign_in(page, console.token(sub="colleague", scopes="rlm:read", org=org))
        page.get_by_role("link", name="Evaluation runs").click()
        runs = page.locator("table.runs tbody tr")
        expect(runs).to_have_count(2)
        expect(runs.first).to_have_attribute("data-run", second.run_id)
        table = page.locator("table.modes")
        expect(table.locator("thead th")).to_have_count(1 + 4)  # two runs of two modes
        accuracy = table.locator("tbody tr").first
        expect(accuracy.locator("td.best")).to_have_text("87.5 %")
        expect(accuracy).to_contain_text("50.0 %")  # the older run's direct mode
        expect(table).to_contain_text("$0.0456")
        expect(table).to_contain_text("4.2 s")
        _shot(page, "evaluation-runs")
        # Unticking a run takes its modes out of the comparison.
        page.get_by_label(f"Compare run {first.run_id.removeprefix('eval_')[:8]}").uncheck()
        expect(table.locator("thead th")).to_have_count(1 + 2)
    with console.page() as page:
        # Another org sees none of them.
        console.sign_in(page, console.token(sub="outsider", org=f"{org}-other"))
        page.get_by_role("link", name="Evaluation runs").click()
        expect(page.locator("main")).to_contain_text("No evaluation runs recorded yet")
    _no_csp_violations(console)


def _contains(part: str) -> re.Pattern[str]:
    """Matches a text containing ``part`` (for ``to_have_attribute``)."""
    return re.compile(re.escape(part))
