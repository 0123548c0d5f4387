// The Evaluation runs view. `rlm eval oolong --json PATH` writes its report to a file; the API
// has no route for evaluation reports, so the page opens such a file from the user's disk
// (read in the browser, never uploaded) and shows its modes side by side.

import { duration, h, num, replace, usd } from "./dom.js";

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

export function evalsView(main) {
  const input = h("input", { type: "file", id: "eval-file", accept: ".json,application/json", multiple: true });
  const out = h("div", { class: "evals" });
  replace(
    main,
    h("h2", { id: "view-title", tabindex: "-1" }, "Evaluation runs"),
    h("p", {}, "Open one or more reports written by ", h("code", {}, "rlm eval oolong --json report.json"), ". They are read in this page only; the API keeps no evaluation results."),
    h("div", { class: "field" }, h("label", { for: "eval-file" }, "Report files"), input),
    out,
  );
  input.addEventListener("change", async () => {
    const reports = [];
    for (const file of input.files) {
      try {
        reports.push([file.name, JSON.parse(await file.text())]);
      } catch (err) {
        reports.push([file.name, { error: err.message }]);
      }
    }
    replace(out, reports.map(([name, r]) => report(name, r)));
  });
}

function report(name, r) {
  if (!r || typeof r.modes !== "object" || r.error) {
    return h("p", { class: "error", role: "alert" }, `${name}: not an rlm eval report${r && r.error ? ` (${r.error})` : ""}`);
  }
  const modes = Object.entries(r.modes);
  const kinds = [...new Set(modes.flatMap(([, m]) => Object.keys(m.byKind || {})))].sort();
  const best = Math.max(...modes.map(([, m]) => m.accuracy));
  return h(
    "section",
    { class: "panel", "aria-label": name },
    h("h3", {}, name, r.benchmark ? ` · ${r.benchmark}` : "", ` · ${num((r.questions || []).length)} questions over ${num((r.windows || []).length)} window${(r.windows || []).length === 1 ? "" : "s"}`),
    h(
      "div",
      { class: "scroll" },
      h(
        "table",
        { class: "modes" },
        h("caption", {}, "Per mode, side by side"),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Figure"), modes.map(([mode]) => h("th", { scope: "col" }, mode)))),
        h(
          "tbody",
          {},
          ROWS.map(([label, f]) => h("tr", {}, h("th", { scope: "row" }, label), modes.map(([, m]) => h("td", { class: "n" + (label === "Accuracy" && m.accuracy === best ? " best" : "") }, f(m))))),
          kinds.map((k) => h("tr", {}, h("th", { scope: "row" }, `Accuracy: ${k}`), modes.map(([, m]) => h("td", { class: "n" }, m.byKind && k in m.byKind ? `${num(100 * m.byKind[k], 1)} %` : "—")))),
        ),
      ),
    ),
  );
}
