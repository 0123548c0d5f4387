// The live recursion tree of a task, drawn on a canvas.
//
// task.started's plan gives the tree's shape once ({nodes, leaves, depth, perDepth,
// parents}; nodes numbered children before parents, the root last); every nodes.started
// names the nodes sent to an agent since the previous one (running) and every task.progress
// those finished, both as [start, end) ranges; a node in neither is pending. The tree is one row
// per depth; a row's nodes are drawn as runs of one state (one rectangle per run, not per
// node). Drawing happens at most once per animation frame, however many events arrive in
// between, and a frame repaints only the span of each row whose nodes changed since the last
// one (the whole tree only when its plan, size or outcome changes): an event costs the page
// a few rectangles, not a 4,096-leaf tree. The per-depth table and the canvas's label are
// written in the same frame, and only where their text changed.

import { frameBatcher, h, num, replace } from "./dom.js";

const PENDING = 0;
const DONE = 1;
const FAILED = 2;
const CANCELLED = 3;
const RUNNING = 4;
// Legend order: the life of a node.
const LEGEND = [PENDING, RUNNING, DONE, FAILED, CANCELLED];
const STATE_NAMES = ["pending", "done", "failed", "cancelled", "running"];
// Running is a saturated blue, pending a pale grey: 4.4:1 between them and 6.1:1 against the
// white page (WCAG asks 3:1 of graphics), so the two read apart without relying on hue alone.
const COLOURS = ["#d5dbe3", "#1a7f37", "#c62828", "#8a6d00", "#1f5fbf"];
// Edges are drawn between levels small enough for a line per node to mean something.
const MAX_EDGE_NODES = 64;

/** Timings the benchmark and tests read: how long after an event it was on the canvas. */
export const stats = (window.rlmConsoleStats ||= {
  eventToDrawnMs: [], // the event's server timestamp -> the frame that drew it
  eventMs: [], // each of those events' server timestamp (wall clock, ms)
  receiveToDrawnMs: [], // the event's arrival in the page -> the frame that drew it
  frames: 0,
  maxDrawMs: 0, // the longest draw() (the tree's share of a frame)
  streamOpenedMs: 0, // wall clock when the page's event stream last connected
});

export class TreeView {
  /**
   * @param {HTMLElement} root where the canvas and the per-depth table go
   */
  constructor(root) {
    this.root = root;
    this.canvas = h("canvas", { class: "tree", role: "img", "aria-label": "Recursion tree: waiting for the task's plan" });
    this.levelsBody = h("tbody");
    this.table = h(
      "table",
      { class: "levels" },
      h("caption", {}, "Agent calls per depth"),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Depth"), h("th", { scope: "col" }, "Finished"), h("th", { scope: "col" }, "Planned"), h("th", { scope: "col" }, "Progress"), h("th", { scope: "col" }, "Running"))),
      this.levelsBody,
    );
    this.legend = h(
      "ul",
      { class: "legend", "aria-label": "Legend" },
      LEGEND.map((i) => h("li", {}, h("span", { class: `swatch s${i}`, "aria-hidden": "true" }), STATE_NAMES[i])),
    );
    replace(root, this.canvas, this.legend, this.table);
    this.plan = null;
    this.state = null; // Uint8Array per node
    this.depthOf = null;
    this.levels = []; // node indices per depth, in drawing order
    this.perDepthDone = [];
    this.perDepthStarted = [];
    this.pending = []; // events received and not yet drawn: [receivedAt, eventTimeMs]
    this.final = null;
    this.posOf = null; // each node's position in its row
    this.dirty = []; // per depth: [first, last] positions changed since the last frame, or null
    this.full = true; // the next frame repaints everything
    this.schedule = frameBatcher(() => this.draw());
    this.resize = new ResizeObserver(() => {
      this.full = true;
      this.schedule();
    });
    this.resize.observe(this.canvas);
  }

  /** Note that node `i` changed state: its row's span to repaint grows to hold it. */
  touch(i) {
    const d = this.depthOf[i];
    const k = this.posOf[i];
    const span = this.dirty[d];
    if (!span) this.dirty[d] = [k, k];
    else if (k < span[0]) span[0] = k;
    else if (k > span[1]) span[1] = k;
  }

  close() {
    this.resize.disconnect();
  }

  /** Take one event's wire form. */
  onEvent(wire) {
    const d = wire.data || {};
    if (wire.event === "task.started" && d.plan) {
      this.setPlan(d.plan);
    } else if (wire.event === "nodes.started") {
      if (Array.isArray(d.perDepth)) this.perDepthStarted = d.perDepth;
      if (this.state && Array.isArray(d.started)) {
        const state = this.state;
        for (const [start, end] of d.started) {
          for (let i = start; i < Math.min(end, state.length); i++) {
            if (state[i] === PENDING) {
              state[i] = RUNNING;
              this.touch(i);
            }
          }
        }
      }
    } else if (wire.event === "task.progress") {
      if (Array.isArray(d.perDepth)) this.perDepthDone = d.perDepth;
      if (this.state && Array.isArray(d.done)) {
        const state = this.state;
        for (const [start, end] of d.done) {
          for (let i = start; i < Math.min(end, state.length); i++) {
            if (state[i] !== DONE) {
              state[i] = DONE;
              this.touch(i);
            }
          }
        }
      }
    } else if (wire.event === "task.completed") {
      this.final = d.status;
      this.full = true;
      if (this.state && d.status !== "completed") {
        const mark = d.status === "cancelled" ? CANCELLED : FAILED;
        for (let i = 0; i < this.state.length; i++) if (this.state[i] === PENDING || this.state[i] === RUNNING) this.state[i] = mark;
      } else if (this.state && d.status === "completed") {
        this.state.fill(DONE);
        if (this.plan) this.perDepthDone = this.plan.perDepth.slice();
      }
    } else {
      return;
    }
    this.pending.push([performance.now(), Date.parse(wire.timestamp)]);
    this.schedule();
  }

  setPlan(plan) {
    this.plan = plan;
    const parents = plan.parents;
    if (!Array.isArray(parents)) {
      this.state = null; // too big to ship its parents: the per-depth rows still draw it
      return;
    }
    const n = parents.length;
    const depth = new Int16Array(n);
    // Parents come after their children: walk from the root (the last node) down.
    for (let i = n - 1; i >= 0; i--) depth[i] = parents[i] < 0 ? 0 : depth[parents[i]] + 1;
    const levels = [];
    const posOf = new Int32Array(n);
    for (let i = 0; i < n; i++) posOf[i] = (levels[depth[i]] ||= []).push(i) - 1;
    this.depthOf = depth;
    this.posOf = posOf;
    this.levels = levels.map((l) => Int32Array.from(l || []));
    this.state = new Uint8Array(n);
    this.full = true;
  }

  draw() {
    const started = performance.now();
    const canvas = this.canvas;
    const dpr = window.devicePixelRatio || 1;
    const width = Math.max(200, canvas.clientWidth);
    const rows = this.plan ? Math.max(1, (this.plan.perDepth || []).length) : 1;
    const rowH = Math.max(10, Math.min(48, Math.floor(420 / rows)));
    const gapH = Math.max(6, Math.floor(rowH * 0.6));
    const height = rows * (rowH + gapH);
    if (canvas.width !== Math.round(width * dpr) || canvas.height !== Math.round(height * dpr)) {
      canvas.width = Math.round(width * dpr);
      canvas.height = Math.round(height * dpr);
      canvas.style.height = `${height}px`;
      this.full = true;
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    // Positions snap to device pixels, so a span repainted later meets its neighbours exactly.
    const snap = (x) => Math.round(x * dpr) / dpr;
    if (this.full || !this.state) {
      ctx.clearRect(0, 0, width, height);
      if (this.plan) {
        if (this.state) this.drawNodes(ctx, width, rowH, gapH, snap);
        else this.drawLevels(ctx, width, rowH, gapH);
      }
      this.full = false;
    } else {
      this.drawDirty(ctx, width, rowH, gapH, snap);
    }
    this.dirty = [];
    this.drawTable();
    this.label();
    const now = performance.now();
    const wall = performance.timeOrigin + now;
    for (const [receivedAt, eventMs] of this.pending) {
      stats.receiveToDrawnMs.push(now - receivedAt);
      if (!Number.isNaN(eventMs)) {
        stats.eventToDrawnMs.push(wall - eventMs);
        stats.eventMs.push(eventMs);
      }
    }
    this.pending = [];
    stats.frames += 1;
    stats.maxDrawMs = Math.max(stats.maxDrawMs, performance.now() - started);
  }

  /** Paint positions [from, to) of row `d`: runs of one state, one rectangle per run. */
  drawSpan(ctx, d, from, to, width, rowH, gapH, snap) {
    const level = this.levels[d];
    const state = this.state;
    const y = d * (rowH + gapH) + gapH / 2;
    const w = width / level.length;
    const pad = w > 4 ? 1 : 0;
    let runStart = from;
    for (let k = from; k <= to; k++) {
      if (k === to || state[level[k]] !== state[level[runStart]]) {
        ctx.fillStyle = COLOURS[state[level[runStart]]];
        if (pad) {
          for (let j = runStart; j < k; j++) ctx.fillRect(snap(j * w) + pad, y, snap(w) - 2 * pad, rowH);
        } else {
          ctx.fillRect(snap(runStart * w), y, snap(k * w) - snap(runStart * w), rowH);
        }
        runStart = k;
      }
    }
  }

  drawNodes(ctx, width, rowH, gapH, snap) {
    const { levels } = this;
    const parents = this.plan.parents;
    levels.forEach((level, d) => this.drawSpan(ctx, d, 0, level.length, width, rowH, gapH, snap));
    ctx.strokeStyle = "#6b7785";
    ctx.lineWidth = 1;
    ctx.beginPath();
    levels.forEach((level, d) => {
      if (d === 0 || level.length > MAX_EDGE_NODES) return;
      const yTop = d * (rowH + gapH) + gapH / 2;
      const yParent = yTop - gapH;
      const w = width / level.length;
      const wp = width / levels[d - 1].length;
      for (let k = 0; k < level.length; k++) {
        ctx.moveTo((k + 0.5) * w, yTop);
        ctx.lineTo((this.posOf[parents[level[k]]] + 0.5) * wp, yParent);
      }
    });
    ctx.stroke();
  }

  /** Repaint only each row's span of nodes that changed (edges lie between rows: untouched). */
  drawDirty(ctx, width, rowH, gapH, snap) {
    this.dirty.forEach((span, d) => {
      if (!span) return;
      const level = this.levels[d];
      const w = width / level.length;
      const from = span[0];
      const to = span[1] + 1;
      const y = d * (rowH + gapH) + gapH / 2;
      ctx.clearRect(snap(from * w), y, snap(to * w) - snap(from * w), rowH);
      this.drawSpan(ctx, d, from, to, width, rowH, gapH, snap);
    });
  }

  drawLevels(ctx, width, rowH, gapH) {
    const planned = this.plan.perDepth || [];
    planned.forEach((count, d) => {
      const y = d * (rowH + gapH) + gapH / 2;
      const done = Math.min(this.perDepthDone[d] || 0, count);
      const fraction = this.final === "completed" ? 1 : count ? done / count : 0;
      ctx.fillStyle = COLOURS[PENDING];
      ctx.fillRect(0, y, width, rowH);
      ctx.fillStyle = COLOURS[DONE];
      ctx.fillRect(0, y, width * fraction, rowH);
      const running = this.final ? 0 : this.running(d, count);
      if (running) {
        ctx.fillStyle = COLOURS[RUNNING];
        ctx.fillRect(width * fraction, y, (width * running) / count, rowH);
      }
      if (this.final && this.final !== "completed") {
        ctx.fillStyle = COLOURS[this.final === "cancelled" ? CANCELLED : FAILED];
        ctx.fillRect(width * fraction, y, width * (1 - fraction), rowH);
      }
    });
  }

  drawTable() {
    const planned = (this.plan && this.plan.perDepth) || [];
    const rows = this.levelsBody.rows;
    planned.forEach((count, d) => {
      let row = rows[d];
      if (!row) {
        row = h("tr", {}, h("th", { scope: "row" }, String(d)), h("td"), h("td", {}, num(count)), h("td", {}, h("progress", { max: String(count || 1), value: "0", "aria-label": `depth ${d}` })), h("td"));
        this.levelsBody.append(row);
      }
      const done = Math.min(this.perDepthDone[d] || 0, count);
      setText(row.cells[1], num(done));
      if (row.cells[3].firstChild.value !== done) row.cells[3].firstChild.value = done;
      setText(row.cells[4], num(this.final ? 0 : this.running(d, count)));
    });
  }

  /** Calls at depth `d` sent and not finished (a resent call counts once). */
  running(d, count) {
    const done = Math.min(this.perDepthDone[d] || 0, count);
    return Math.max(0, Math.min(this.perDepthStarted[d] || 0, count) - done);
  }

  label() {
    if (!this.plan) return;
    const planned = (this.plan.perDepth || []).reduce((a, b) => a + b, 0);
    const done = this.perDepthDone.reduce((a, b) => a + b, 0);
    const running = this.final ? 0 : (this.plan.perDepth || []).reduce((a, count, d) => a + this.running(d, count), 0);
    const fanout = (this.plan.perDepth || []).join(" → ");
    const text =
      `Recursion tree: ${(this.plan.perDepth || []).length} levels (${fanout} calls), ` +
        `${num(this.plan.leaves)} leaves; ${num(Math.min(done, planned))} of ${num(planned)} calls finished, ${num(running)} running` +
      (this.final ? `; task ${this.final}` : "");
    if (this.canvas.getAttribute("aria-label") !== text) this.canvas.setAttribute("aria-label", text);
  }
}

/** Write `text` into `el` only when it differs (an unchanged cell costs no style work). */
function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}
