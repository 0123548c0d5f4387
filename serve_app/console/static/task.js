// A task: its status, the live recursion tree, the RLM trajectory, cancel, result and error.

import { blob, call, streamEvents } from "./api.js";
import { duration, frameBatcher, h, num, pretty, replace, usd, when } from "./dom.js";
import { TrajectoryView } from "./trajectory.js";
import { TreeView, stats } from "./tree.js";

function fact(label, value) {
  return [h("dt", {}, label), h("dd", {}, value)];
}

export function taskView(main, taskId, { signal, announce }) {
  const title = h("h2", { id: "view-title", tabindex: "-1" }, "Task ", h("code", {}, taskId));
  const percent = h("span", { id: "task-percent" }, "0 %");
  const statusBadge = h("span", { class: "badge", id: "task-status" }, "loading");
  const facts = h("dl", { class: "facts" });
  const cancel = h("button", { type: "button", class: "danger", id: "cancel-task", disabled: true }, "Cancel task");
  const download = h("button", { type: "button", id: "download-trajectory", hidden: true }, "Download trajectory (JSONL)");
  const message = h("p", { class: "note", role: "status", "aria-live": "polite" });
  const outcome = h("section", { class: "outcome", "aria-label": "Result" });
  const treeBox = h("div", { class: "tree-box" });
  const trajBox = h("div", { class: "traj-box" });
  const treePanel = h("section", { class: "panel", "aria-labelledby": "tree-h" }, h("h3", { id: "tree-h" }, "Recursion tree"), treeBox);
  const trajPanel = h("section", { class: "panel", "aria-labelledby": "traj-h", hidden: true }, h("h3", { id: "traj-h" }, "RLM trajectory"), download, trajBox);
  const grid = h("div", { class: "task-grid" }, treePanel, trajPanel);
  replace(
    main,
    h("p", {}, h("a", { href: "#/tasks" }, "← All tasks")),
    title,
    h("div", { class: "task-head" }, statusBadge, h("span", { class: "big" }, percent), cancel),
    facts,
    message,
    grid,
    outcome,
  );

  const tree = new TreeView(treeBox);
  const traj = new TrajectoryView(trajBox);
  signal.addEventListener("abort", () => tree.close());
  let status = null;
  // The head (status badge, percent) is written once per animation frame, not per event.
  let shownPercent = null;
  const paintHead = frameBatcher(() => {
    if (shownPercent !== null) percent.textContent = `${num(shownPercent, 0)} %`;
    shownPercent = null;
  });

  function showStatus(t) {
    status = t.status;
    statusBadge.textContent = t.status;
    statusBadge.className = `badge ${t.status}`;
    const r = t.result || {};
    const u = r.usage || {};
    const p = t.progress || {};
    const pct = t.status === "completed" ? 100 : p.percentage || 0;
    percent.textContent = `${num(pct, 0)} %`;
    cancel.disabled = !(t.status === "pending" || t.status === "running");
    replace(
      facts,
      fact("Type", [t.type, t.operation].filter(Boolean).join(" · ") || "—"),
      t.description ? fact("Description", t.description) : null,
      fact("Agent calls", `${num(r.agentCalls ?? p.current)}${p.total > 1 ? ` of ${num(p.total)} planned` : ""}`),
      fact("Depth", r.decompositionDepth === undefined ? "—" : num(r.decompositionDepth)),
      fact("Duration", duration(r.executionTimeMs)),
      fact("Tokens", u.inputTokens === undefined ? "—" : `${num(u.inputTokens)} in / ${num(u.outputTokens)} out (${num(u.lmCalls)} LM calls, ${num(u.cachedCalls)} cached)`),
      fact("Cost", usd(u.costUsd)),
      fact("Created", when(t.createdAt)),
      t.completedAt ? fact("Ended", when(t.completedAt)) : null,
    );
    if (t.result) showResult(t.result);
  }

  function showResult(r) {
    const parts = [h("h3", {}, "Result")];
    if (r.error) {
      parts.push(h("div", { class: "error-box", role: "alert" }, h("strong", {}, r.error.code), ": ", r.error.message, r.error.details ? h("pre", {}, pretty(r.error.details, 4000)) : null));
    }
    if (r.output !== undefined) parts.push(h("pre", { class: "output", id: "task-output" }, pretty(r.output)));
    else if (!r.error) parts.push(h("p", { class: "note" }, `No output: the task ${r.status}.`));
    if (r.score !== undefined) parts.push(h("p", {}, `Score: ${r.score}`));
    replace(outcome, parts);
  }

  function onEvent(wire) {
    tree.onEvent(wire);
    traj.onEvent(wire);
    if (traj.seen && trajPanel.hidden) {
      trajPanel.hidden = false;
      download.hidden = false;
      grid.classList.add("two");
    }
    if (traj.seen && !treePanel.hidden && !(tree.plan && tree.plan.nodes > 1)) {
      // An RLM's own plan is one node: its recursion is the trajectory's nested RLMs.
      treePanel.hidden = true;
      grid.classList.remove("two");
    }
    if ((wire.event === "task.started" || wire.event === "nodes.started") && status === "pending") {
      statusBadge.textContent = status = "running";
      statusBadge.className = "badge running";
    } else if (wire.event === "task.progress") {
      shownPercent = wire.data.percent;
      paintHead();
    } else if (wire.event === "task.completed") {
      call(`/tasks/${encodeURIComponent(taskId)}`, { signal }).then(showStatus, () => {});
      if (wire.data.result) showResult(wire.data.result);
      if (wire.data.status === "completed") {
        shownPercent = 100;
        paintHead();
      }
      announce(`Task ${taskId} ${wire.data.status}.`);
    }
  }

  cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    message.textContent = "Cancelling…";
    try {
      const answer = await call(`/tasks/${encodeURIComponent(taskId)}/cancel`, { method: "POST" });
      message.textContent = answer.message;
    } catch (err) {
      message.textContent = `Could not cancel: ${err.message}`;
      cancel.disabled = false;
    }
  });

  download.addEventListener("click", async () => {
    try {
      const data = await blob(`/tasks/${encodeURIComponent(taskId)}/trajectory?format=jsonl`, "application/x-ndjson");
      const url = URL.createObjectURL(data);
      const a = h("a", { href: url, download: `${taskId}.trajectory.jsonl`, hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (err) {
      message.textContent = `Could not download the trajectory: ${err.message}`;
    }
  });

  (async () => {
    try {
      showStatus(await call(`/tasks/${encodeURIComponent(taskId)}`, { signal }));
      await streamEvents(taskId, onEvent, signal, () => {
        stats.streamOpenedMs = Date.now();
      });
    } catch (err) {
      if (signal.aborted) return;
      statusBadge.textContent = err.code === "TASK_NOT_FOUND" ? "not found" : "error";
      message.textContent = err.code === "TASK_NOT_FOUND" ? "No such task (or not one this token may see)." : `Could not load the task: ${err.message}`;
    }
  })();
}
