// The Quotas view: the caller's day/week/month windows and its usage over time; its team's
// pool, members and usage and its org's hierarchy (and, for managers, the org's usage) when
// the token names them (the API decides who may see what).

import { ApiError, call, claims } from "./api.js";
import { h, num, replace, usd, when } from "./dom.js";
import { usagePanel } from "./usage.js";

const SAMPLE_MS = 10_000;

function meter(label, used, limit, digits = 0) {
  const high = limit ? Math.max(0, limit * 0.8) : 0;
  return h(
    "div",
    { class: "meter-row" },
    h("span", {}, label),
    h("meter", { min: "0", max: String(limit || 1), value: String(Math.min(used, limit || used)), high: String(high), optimum: "0", "aria-label": label }),
    h("span", { class: "n" }, `${num(used, digits)} / ${limit ? num(limit, digits) : "∞"}`),
  );
}

function windowCard(name, w, history) {
  const spark = h("canvas", { class: "spark", width: "240", height: "36", role: "img", "aria-label": `${name}: agent calls used, sampled while this page is open` });
  const ctx = spark.getContext("2d");
  const max = Math.max(1, ...history);
  ctx.strokeStyle = "#0b5cad";
  ctx.beginPath();
  history.forEach((v, i) => {
    const x = history.length === 1 ? 0 : (i / (history.length - 1)) * 239;
    const y = 34 - (v / max) * 32;
    if (i) ctx.lineTo(x, y);
    else ctx.moveTo(x, y);
  });
  ctx.stroke();
  return h(
    "section",
    { class: "card" + (w.exceeded ? " exceeded" : ""), "aria-label": `${name} window` },
    h("h3", {}, name, w.exceeded ? " — exceeded" : ""),
    meter("Agent calls", w.agentsUsed, w.agentsLimit),
    meter("Compute hours", w.computeHoursUsed, w.computeHoursLimit, 2),
    w.tokenLimit ? meter("Tokens", w.tokensUsed, w.tokenLimit) : h("p", {}, `Tokens: ${num(w.tokensUsed)}`),
    h("p", {}, `Cost: ${usd(w.costUsd)} · resets ${when(w.resetTime)}`),
    spark,
  );
}

function lookup(label, onGo) {
  const input = h("input", { type: "text", autocomplete: "off" });
  const id = `lookup-${label.toLowerCase().replace(/\W+/g, "-")}`;
  input.id = id;
  return h(
    "form",
    { class: "lookup", onsubmit: (e) => { e.preventDefault(); if (input.value.trim()) onGo(input.value.trim()); } },
    h("label", { for: id }, label),
    input,
    h("button", { type: "submit" }, "Show"),
  );
}

export function quotasView(main, { signal }) {
  const c = claims();
  const scopes = String(c.scope || "").split(" ");
  const manager = scopes.includes("rlm:quota:manage") || scopes.includes("rlm:admin");
  const mine = h("div", { class: "cards" }, h("p", {}, "Loading…"));
  const team = h("div", { class: "team" });
  const org = h("div", { class: "org" });
  const history = { daily: [], weekly: [], monthly: [] };
  const myUsage = usagePanel("user", "me", "Your usage", { signal });
  replace(
    main,
    h("h2", { id: "view-title", tabindex: "-1" }, "Quotas"),
    h("section", { "aria-labelledby": "q-mine" }, h("h3", { id: "q-mine" }, `Your windows${c.sub ? ` (${c.sub})` : ""}`), mine, myUsage.panel),
    h("section", { "aria-labelledby": "q-team" }, h("h3", { id: "q-team" }, "Team"), manager ? lookup("Team id", (id) => showTeam(id)) : null, team),
    h("section", { "aria-labelledby": "q-org" }, h("h3", { id: "q-org" }, "Organization"), manager ? lookup("Org id", (id) => showOrg(id)) : null, org),
  );

  function refused(box, err) {
    const why = err instanceof ApiError && err.status === 403 ? "This token may not see it" : err.message;
    replace(box, h("p", { class: "note" }, why));
  }

  async function showMine() {
    try {
      const q = await call("/quotas/user/me", { signal });
      for (const k of Object.keys(history)) {
        history[k].push(q[k].agentsUsed);
        if (history[k].length > 360) history[k].shift();
      }
      replace(
        mine,
        windowCard("Day", q.daily, history.daily),
        windowCard("Week", q.weekly, history.weekly),
        windowCard("Month", q.monthly, history.monthly),
        h("p", { class: "wide" }, `Concurrent agents: ${num(q.currentConcurrentAgents)} of ${num(q.maxConcurrentAgents)}`),
      );
    } catch (err) {
      if (!signal.aborted) refused(mine, err);
    }
  }

  async function showTeam(id) {
    try {
      const t = await call(`/quotas/team/${encodeURIComponent(id)}`, { signal });
      const u = t.usage;
      replace(
        team,
        h("h4", {}, `${t.config.teamName} (${t.teamId})${t.orgId ? ` · org ${t.orgId}` : ""}`),
        meter("Agent pool", u.agentsUsed, u.agentsTotal),
        meter("Compute hours", u.computeUsed, u.computeTotal, 2),
        meter("Storage GB", u.storageUsed, u.storageTotal, 2),
        h("p", {}, `Tokens: ${num(u.tokensUsed)} · cost ${usd(u.costUsd)}`),
        h(
          "table",
          { class: "members" },
          h("caption", {}, "Members"),
          h("thead", {}, h("tr", {}, ["Member", "Role", "Agents used", "Agents allocated", "Compute h used", "Compute h allocated"].map((x) => h("th", { scope: "col" }, x)))),
          h("tbody", {}, t.members.map((m) => h("tr", {}, h("th", { scope: "row" }, m.userId), h("td", {}, m.role), h("td", { class: "n" }, num(m.agentsUsed)), h("td", { class: "n" }, m.agentsAllocated === undefined ? "—" : num(m.agentsAllocated)), h("td", { class: "n" }, num(m.computeHoursUsed, 2)), h("td", { class: "n" }, m.computeHoursAllocated === undefined ? "—" : num(m.computeHoursAllocated, 2))))),
        ),
        t.projects.length ? h("ul", { "aria-label": "Projects" }, t.projects.map((p) => h("li", {}, `${p.name || p.projectId}: ${num(p.agentsAllocated)} agents, ${num(p.computeHoursAllocated, 2)} compute h`))) : null,
        usagePanel("team", t.teamId, `Team ${t.teamId}`, { signal }).panel,
      );
    } catch (err) {
      if (!signal.aborted) refused(team, err);
    }
  }

  function orgLine(o, here) {
    return h("li", { class: here ? "here" : null }, h("strong", {}, o.name || o.orgId), ` (${o.orgId}) · ${num(o.agentsUsed)} of ${num(o.agents)} agents`);
  }

  async function showOrg(id) {
    try {
      const x = await call(`/quotas/enterprise/org/${encodeURIComponent(id)}/hierarchy`, { signal });
      replace(
        org,
        h("h4", {}, "Hierarchy"),
        h("ol", { class: "hierarchy", "aria-label": "Ancestors, root first, then this org" }, x.ancestors.map((o) => orgLine(o)), orgLine(x.org, true)),
        h("p", {}, "Descendants:"),
        x.descendants.length ? h("ul", {}, x.descendants.map((o) => orgLine(o))) : h("p", { class: "note" }, "none"),
        h("p", {}, "Siblings:"),
        x.siblings.length ? h("ul", {}, x.siblings.map((o) => orgLine(o))) : h("p", { class: "note" }, "none"),
        // An org's usage is for its managers (the API refuses anyone else).
        manager ? usagePanel("org", x.org.orgId, `Org ${x.org.orgId}`, { signal }).panel : null,
      );
    } catch (err) {
      if (!signal.aborted) refused(org, err);
    }
  }

  showMine();
  if (c.team) showTeam(c.team);
  else replace(team, h("p", { class: "note" }, "This token names no team."));
  if (c.org) showOrg(c.org);
  else replace(org, h("p", { class: "note" }, "This token names no organization."));
  const timer = setInterval(() => document.hidden || (showMine(), myUsage.refresh()), SAMPLE_MS);
  signal.addEventListener("abort", () => clearInterval(timer));
}
