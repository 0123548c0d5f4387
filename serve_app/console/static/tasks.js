// The Tasks view: the caller's newest tasks (an admin's: its org's too). Status, type,
// operation and creation time are filtered by the server (GET /v1/tasks?status=...; the
// filters go in the API call's query, never in the page's URL); "Load more" follows the
// answer's nextCursor. The search box narrows the loaded rows by id or description.

import { call, claims } from "./api.js";
import { duration, h, num, replace, usd, when } from "./dom.js";

const SINCE = { any: 0, "1h": 3600e3, "24h": 86400e3, "7d": 7 * 86400e3 };
const REFRESH_MS = 4000;
const PAGE = 50;
// The most rows a refresh asks for at once (the API's page limit).
const MAX_PAGE = 500;

function field(label, control) {
  const id = `f-${label.toLowerCase().replace(/\W+/g, "-")}`;
  control.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label), control);
}

function select(options) {
  return h("select", {}, options.map(([value, text]) => h("option", { value }, text)));
}

function taskDuration(t) {
  if (t.result && t.result.executionTimeMs) return t.result.executionTimeMs;
  if (!t.startedAt) return null;
  const end = t.completedAt ? Date.parse(t.completedAt) : Date.now();
  return end - Date.parse(t.startedAt);
}

export function tasksView(main, { signal }) {
  const status = select([["", "any status"], ["pending,running", "pending or running"], ["pending", "pending"], ["running", "running"], ["completed", "completed"], ["failed", "failed"], ["cancelled", "cancelled"]]);
  const type = select([["", "any type"], ["recursive", "recursive"], ["parallel", "parallel"], ["sequential", "sequential"]]);
  const operation = h("input", { type: "text", list: "ops", placeholder: "e.g. sum, rlm", autocomplete: "off" });
  const ops = h("datalist", { id: "ops" });
  const since = select([["any", "any time"], ["1h", "last hour"], ["24h", "last 24 hours"], ["7d", "last 7 days"]]);
  const text = h("input", { type: "search", placeholder: "id or description", autocomplete: "off" });
  const refresh = h("button", { type: "button" }, "Refresh");
  const more = h("button", { type: "button", class: "more", hidden: true }, "Load more");
  const note = h("p", { class: "note", role: "status" });
  const body = h("tbody");
  const isAdmin = String(claims().scope || "").split(" ").includes("rlm:admin");
  const form = h(
    "form",
    { class: "filters", "aria-label": "Filter tasks", onsubmit: (e) => e.preventDefault() },
    field("Status", status),
    field("Type", type),
    field("Operation", operation),
    ops,
    field("Created", since),
    field("Search", text),
    refresh,
  );
  const table = h(
    "table",
    { class: "tasks" },
    h("caption", {}, isAdmin ? "Your tasks and your org's (newest first)" : "Your tasks (newest first)"),
    h(
      "thead",
      {},
      h("tr", {}, ["Task", "Status", "Progress", "Agent calls", "Depth", "Duration", "Tokens", "Cost", "Created"].map((c) => h("th", { scope: "col" }, c))),
    ),
    body,
  );
  replace(main, h("h2", { id: "view-title", tabindex: "-1" }, "Tasks"), form, note, h("div", { class: "scroll" }, table), more);

  let tasks = [];
  let nextCursor = null;
  let loading = 0; // the newest load wins: an older answer arriving late is dropped

  /** The API query of the filters (and of the page after `cursor`). */
  function query(limit, cursor) {
    const params = new URLSearchParams({ limit: String(limit) });
    if (status.value) params.set("status", status.value);
    if (type.value) params.set("type", type.value);
    const op = operation.value.trim();
    if (op) params.set("operation", op);
    if (SINCE[since.value]) params.set("since", new Date(Date.now() - SINCE[since.value]).toISOString());
    if (cursor) params.set("cursor", cursor);
    return `/tasks?${params}`;
  }

  function render() {
    const q = text.value.trim().toLowerCase();
    const shown = tasks.filter((t) => !q || t.taskId.toLowerCase().includes(q) || (t.description || "").toLowerCase().includes(q));
    replace(
      body,
      shown.map((t) => {
        const r = t.result || {};
        const u = r.usage || {};
        const p = t.progress || { percentage: 0, current: 0, total: 0 };
        const pct = t.status === "completed" ? 100 : p.percentage;
        return h(
          "tr",
          { "data-task": t.taskId, class: `st-${t.status}` },
          h("td", {}, h("a", { href: `#/task/${encodeURIComponent(t.taskId)}` }, t.taskId), h("div", { class: "desc" }, [t.type, t.operation, t.description].filter(Boolean).join(" · "))),
          h("td", {}, h("span", { class: `badge ${t.status}` }, t.status)),
          h("td", {}, h("progress", { max: "100", value: String(pct), "aria-label": `${t.taskId} progress` }), ` ${num(pct, 0)} %`),
          h("td", { class: "n" }, num(r.agentCalls ?? p.current)),
          h("td", { class: "n" }, r.decompositionDepth === undefined ? "—" : num(r.decompositionDepth)),
          h("td", { class: "n" }, duration(taskDuration(t))),
          h("td", { class: "n" }, u.inputTokens === undefined ? "—" : num(u.inputTokens + u.outputTokens)),
          h("td", { class: "n" }, u.costUsd === undefined ? "—" : usd(u.costUsd)),
          h("td", {}, when(t.createdAt)),
        );
      }),
    );
    note.textContent = `${shown.length} of ${tasks.length} tasks shown${nextCursor ? "; more on the server" : ""}.`;
    more.hidden = !nextCursor;
  }

  /** Load the first page again (a refresh keeps as many rows as were loaded). */
  async function load() {
    const mine = ++loading;
    const limit = Math.min(MAX_PAGE, Math.max(PAGE, tasks.length));
    try {
      const page = await call(query(limit), { signal });
      if (mine !== loading) return;
      tasks = page.tasks;
      nextCursor = page.nextCursor || null;
      const names = new Set([...ops.options].map((o) => o.value));
      for (const t of tasks) if (t.operation) names.add(t.operation);
      replace(ops, [...names].sort().map((n) => h("option", { value: n })));
      render();
    } catch (err) {
      if (!signal.aborted && mine === loading) note.textContent = `Could not list tasks: ${err.message}`;
    }
  }

  async function loadMore() {
    if (!nextCursor) return;
    const mine = ++loading;
    more.disabled = true;
    try {
      const page = await call(query(PAGE, nextCursor), { signal });
      if (mine !== loading) return;
      tasks = tasks.concat(page.tasks);
      nextCursor = page.nextCursor || null;
      render();
    } catch (err) {
      if (!signal.aborted && mine === loading) note.textContent = `Could not load more tasks: ${err.message}`;
    } finally {
      more.disabled = false;
    }
  }

  function reload() {
    tasks = [];
    nextCursor = null;
    load();
  }

  let typing = null;
  for (const control of [status, type, since]) control.addEventListener("change", reload);
  operation.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(reload, 300);
  });
  text.addEventListener("input", render);
  refresh.addEventListener("click", load);
  more.addEventListener("click", loadMore);
  load();
  const timer = setInterval(() => {
    if (!document.hidden && tasks.some((t) => t.status === "pending" || t.status === "running")) load();
  }, REFRESH_MS);
  signal.addEventListener("abort", () => {
    clearInterval(timer);
    clearTimeout(typing);
  });
}
