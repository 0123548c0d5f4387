// Usage over time: a bar chart (SVG) of what a user, team or org was charged in the current
// day, week or month window, from GET /quotas/{user|team|enterprise/org}/{id}/usage, with the
// same figures as a table for screen readers and for reading exact values.

import { call } from "./api.js";
import { h, num, replace, usd } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 640;
const HEIGHT = 160;
const PAD = { left: 44, right: 8, top: 8, bottom: 22 };

const PERIODS = [
  ["daily", "Today, per hour", "hour"],
  ["weekly", "This week, per day", "day"],
  ["monthly", "This month, per day", "day"],
];

/** The path of a level's usage route. */
export function usagePath(level, id) {
  const where = { user: "user", team: "team", org: "enterprise/org" }[level];
  return `/quotas/${where}/${encodeURIComponent(id)}/usage`;
}

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== null && v !== undefined) el.setAttribute(k, String(v));
  for (const c of children) if (c) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

function label(start, bucket) {
  const d = new Date(start);
  return bucket === "hour"
    ? `${String(d.getUTCHours()).padStart(2, "0")}:00`
    : `${d.getUTCFullYear()}-${String(d.getUTCMonth() + 1).padStart(2, "0")}-${String(d.getUTCDate()).padStart(2, "0")}`;
}

/** The SVG bar chart of agent calls per bucket (role img, its summary as the label). */
export function usageChart(history, name) {
  const points = history.buckets;
  const max = Math.max(1, ...points.map((p) => p.agentsUsed));
  const plotW = WIDTH - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const step = plotW / Math.max(1, points.length);
  const summary = `${name}: ${num(history.total.agentsUsed)} agent calls ${history.period === "daily" ? "today" : history.period === "weekly" ? "this week" : "this month"}, peak ${num(max === 1 && !history.total.agentsUsed ? 0 : max)} in one ${history.bucket}`;
  const chart = svg(
    "svg",
    { class: "usage-chart", viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "aria-label": summary, "data-buckets": points.length },
    svg("title", {}, summary),
    svg("line", { class: "axis", x1: PAD.left, y1: PAD.top + plotH, x2: WIDTH - PAD.right, y2: PAD.top + plotH }),
    svg("text", { class: "tick", x: PAD.left - 4, y: PAD.top + 8, "text-anchor": "end" }, num(max)),
    svg("text", { class: "tick", x: PAD.left - 4, y: PAD.top + plotH, "text-anchor": "end" }, "0"),
  );
  points.forEach((p, i) => {
    const barH = (p.agentsUsed / max) * plotH;
    const x = PAD.left + i * step + step * 0.1;
    const bar = svg("rect", { class: "bar", x: x.toFixed(1), y: (PAD.top + plotH - barH).toFixed(1), width: Math.max(1, step * 0.8).toFixed(1), height: barH.toFixed(1), "data-agents": p.agentsUsed });
    bar.append(svg("title", {}, `${label(p.start, history.bucket)}: ${num(p.agentsUsed)} agent calls`));
    chart.append(bar);
  });
  const every = Math.max(1, Math.ceil(points.length / 8));
  points.forEach((p, i) => {
    if (i % every === 0) {
      chart.append(svg("text", { class: "tick", x: (PAD.left + i * step + step / 2).toFixed(1), y: HEIGHT - 6, "text-anchor": "middle" }, label(p.start, history.bucket).replace(/^\d{4}-/, "")));
    }
  });
  return chart;
}

/** The same figures as a table (every bucket, UTC), under a disclosure. */
export function usageTable(history, name) {
  return h(
    "details",
    { class: "usage-table" },
    h("summary", {}, `${name}: usage as a table`),
    h(
      "div",
      { class: "scroll" },
      h(
        "table",
        {},
        h("caption", {}, `${name}, per ${history.bucket} (UTC)`),
        h("thead", {}, h("tr", {}, ["Start", "Agent calls", "Compute h", "Tokens", "Cost"].map((x) => h("th", { scope: "col" }, x)))),
        h(
          "tbody",
          {},
          history.buckets.map((p) => h("tr", {}, h("th", { scope: "row" }, label(p.start, history.bucket)), h("td", { class: "n" }, num(p.agentsUsed)), h("td", { class: "n" }, num(p.computeHoursUsed, 2)), h("td", { class: "n" }, num(p.tokensUsed)), h("td", { class: "n" }, usd(p.costUsd)))),
          h("tr", { class: "total" }, h("th", { scope: "row" }, "Total"), h("td", { class: "n" }, num(history.total.agentsUsed)), h("td", { class: "n" }, num(history.total.computeHoursUsed, 2)), h("td", { class: "n" }, num(history.total.tokensUsed)), h("td", { class: "n" }, usd(history.total.costUsd))),
        ),
      ),
    ),
  );
}

/**
 * A panel drawing `level` `id`'s usage over time, with a period picker; `refresh()` redraws
 * it (the view calls it as it samples the current windows).
 */
export function usagePanel(level, id, name, { signal }) {
  const slug = `${level}-${id}`.replace(/\W+/g, "-");
  const picker = h("select", { id: `usage-period-${slug}`, "aria-label": `${name}: period` }, PERIODS.map(([value, text]) => h("option", { value }, text)));
  const body = h("div", { class: "usage-body", "aria-live": "polite" }, h("p", {}, "Loading…"));
  const panel = h("section", { class: "usage", "data-level": level, "aria-label": `${name}: usage over time` }, h("div", { class: "field" }, h("label", { for: picker.id }, "Usage over time"), picker), body);

  async function refresh() {
    const [period, , bucket] = PERIODS.find(([p]) => p === picker.value);
    try {
      const history = await call(`${usagePath(level, id)}?period=${period}&bucket=${bucket}`, { signal });
      replace(body, usageChart(history, name), h("p", { class: "note" }, `Total: ${num(history.total.agentsUsed)} agent calls · ${num(history.total.computeHoursUsed, 2)} compute h · ${num(history.total.tokensUsed)} tokens · ${usd(history.total.costUsd)}`), usageTable(history, name));
    } catch (err) {
      if (!signal.aborted) replace(body, h("p", { class: "note" }, err.status === 403 ? "This token may not see this usage" : err.message));
    }
  }
  picker.addEventListener("change", refresh);
  refresh();
  return { panel, refresh };
}
