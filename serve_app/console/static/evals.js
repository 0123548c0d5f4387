// The Evaluation runs view: runs recorded in the API (`rlm eval oolong --record`, or
// `rlm eval record report.json`) from GET /evaluations — the caller's and its org's — and the
// chosen runs' modes side by side: accuracy, cost and latency per mode.

import { call } from "./api.js";
import { duration, h, num, replace, usd, when } from "./dom.js";

const SHOWN = 3; // runs compared at first: the newest

const ROWS = [
  ["Accuracy", (m) => `${num(100 * m.accuracy, 1)} %`],
  ["Questions", (m) => num(m.questions)],
  ["Errors", (m) => num(m.errors)],
  ["Latency p50", (m) => duration(m.latencyMs && m.latencyMs.p50)],
  ["Latency p95", (m) => duration(m.latencyMs && m.latencyMs.p95)],
  ["Agent calls", (m) => num(m.agentCalls)],
  ["LM calls", (m) => num(m.lmCalls)],
  ["Cached calls", (m) => num(m.cachedCalls)],
  ["Input tokens", (m) => num(m.inputTokens)],
  ["Output tokens", (m) => num(m.outputTokens)],
  ["Cost", (m) => usd(m.costUsd)],
];

function short(run) {
  return run.runId.replace(/^eval_/, "").slice(0, 8);
}

function bestAccuracy(run) {
  return Math.max(...Object.values(run.modes).map((m) => m.accuracy));
}

export function evalsView(main, { signal }) {
  const list = h("div", { class: "eval-runs" }, h("p", {}, "Loading…"));
  const compare = h("div", { class: "evals", "aria-live": "polite" });
  replace(
    main,
    h("h2", { id: "view-title", tabindex: "-1" }, "Evaluation runs"),
    h("p", {}, "Runs recorded with ", h("code", {}, "rlm eval oolong --record"), " or ", h("code", {}, "rlm eval record report.json"), ": yours and your organization's, newest first. Tick runs to compare their modes side by side."),
    list,
    compare,
  );

  let runs = [];
  const chosen = new Set();

  function drawComparison() {
    const picked = runs.filter((r) => chosen.has(r.runId));
    if (!picked.length) {
      replace(compare, h("p", { class: "note" }, "No run chosen."));
      return;
    }
    const columns = picked.flatMap((run) => Object.entries(run.modes).map(([mode, m]) => ({ run, mode, m })));
    const best = Math.max(...columns.map((c) => c.m.accuracy));
    const kinds = [...new Set(columns.flatMap((c) => Object.keys(c.m.byKind || {})))].sort();
    replace(
      compare,
      h(
        "section",
        { class: "panel", "aria-label": "Modes side by side" },
        h("h3", {}, `${picked.length} run${picked.length === 1 ? "" : "s"} side by side`),
        h(
          "div",
          { class: "scroll" },
          h(
            "table",
            { class: "modes" },
            h("caption", {}, "Per run and mode"),
            h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Figure"), columns.map((c) => h("th", { scope: "col", "data-run": c.run.runId }, `${short(c.run)} · ${c.mode}`)))),
            h(
              "tbody",
              {},
              ROWS.map(([label, f]) => h("tr", {}, h("th", { scope: "row" }, label), columns.map((c) => h("td", { class: "n" + (label === "Accuracy" && c.m.accuracy === best ? " best" : "") }, f(c.m))))),
              kinds.map((k) => h("tr", {}, h("th", { scope: "row" }, `Accuracy: ${k}`), columns.map((c) => h("td", { class: "n" }, c.m.byKind && k in c.m.byKind ? `${num(100 * c.m.byKind[k], 1)} %` : "—")))),
            ),
          ),
        ),
      ),
    );
  }

  function row(run) {
    const box = h("input", { type: "checkbox", id: `eval-${run.runId}`, checked: chosen.has(run.runId), "aria-label": `Compare run ${short(run)}` });
    box.addEventListener("change", () => {
      if (box.checked) chosen.add(run.runId);
      else chosen.delete(run.runId);
      drawComparison();
    });
    const questions = Math.max(...Object.values(run.modes).map((m) => m.questions));
    return h(
      "tr",
      { "data-run": run.runId },
      h("td", {}, box),
      h("th", { scope: "row" }, h("label", { for: box.id }, short(run))),
      h("td", {}, when(run.createdAt)),
      h("td", {}, run.ownerId),
      h("td", {}, run.benchmark),
      h("td", {}, Object.keys(run.modes).join(", ")),
      h("td", { class: "n" }, num(questions)),
      h("td", { class: "n" }, `${num(100 * bestAccuracy(run), 1)} %`),
    );
  }

  async function load() {
    try {
      runs = (await call("/evaluations?limit=50", { signal })).evaluations;
    } catch (err) {
      if (!signal.aborted) replace(list, h("p", { class: "error", role: "alert" }, err.status === 403 ? "This token may not read evaluation runs (it needs rlm:read)." : err.message));
      return;
    }
    if (!runs.length) {
      replace(list, h("p", { class: "note" }, "No evaluation runs recorded yet."));
      replace(compare);
      return;
    }
    runs.slice(0, SHOWN).forEach((r) => chosen.add(r.runId));
    replace(
      list,
      h(
        "div",
        { class: "scroll" },
        h(
          "table",
          { class: "runs" },
          h("caption", {}, "Recorded runs"),
          h("thead", {}, h("tr", {}, ["Compare", "Run", "Recorded", "By", "Benchmark", "Modes", "Questions", "Best accuracy"].map((x) => h("th", { scope: "col" }, x)))),
          h("tbody", {}, runs.map(row)),
        ),
      ),
    );
    drawComparison();
  }

  load();
}
