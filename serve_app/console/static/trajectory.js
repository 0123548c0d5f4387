// An RLM task's trajectory as a timeline: each RLM (the root "0", children "0.2", ...) is a
// section of turns; a turn shows the model's reply, its ```repl cells with their output, and
// the sub-call batches it sent; child RLMs nest inside the turn of their parent that started
// them. Events are queued and applied to the DOM once per animation frame.

import { duration, frameBatcher, h, num } from "./dom.js";

// The server already keeps the first and last 1,000 characters of a long text (and says where
// it cut); this only guards the page against an event that was not clipped.
const OUTPUT_CHARS = 4000;

function cut(text) {
  if (!text) return "";
  return text.length > OUTPUT_CHARS ? `${text.slice(0, OUTPUT_CHARS)}\n… (${text.length - OUTPUT_CHARS} more characters)` : text;
}

export class TrajectoryView {
  constructor(root) {
    this.root = root;
    this.rlms = new Map(); // path -> {section, turns: Map(turn -> {li, body}), list, lastTurn}
    this.queue = [];
    this.counts = { turns: 0, cells: 0, subcalls: 0, children: 0 };
    this.summary = h("p", { class: "traj-summary", "aria-live": "polite" }, "No RLM steps yet.");
    this.tree = h("div", { class: "traj-tree" });
    root.replaceChildren(this.summary, this.tree);
    this.flush = frameBatcher(() => this.apply());
  }

  /** Whether the task has RLM steps (its view shows the timeline only then). */
  get seen() {
    return this.rlms.size > 0 || this.queue.length > 0;
  }

  onEvent(wire) {
    if (!wire.event.startsWith("rlm.")) return;
    this.queue.push(wire);
    this.flush();
  }

  apply() {
    const queue = this.queue;
    this.queue = [];
    for (const wire of queue) {
      const d = wire.data || {};
      if (wire.event === "rlm.turn") this.turn(d);
      else if (wire.event === "rlm.cell") this.cell(d);
      else if (wire.event === "rlm.subcalls") this.subcalls(d);
      else if (wire.event === "rlm.child") this.child(d);
      else if (wire.event === "rlm.answer") this.answer(d);
    }
    const c = this.counts;
    this.summary.textContent = `${this.rlms.size} RLM${this.rlms.size === 1 ? "" : "s"}, ${c.turns} turns, ${c.cells} cells, ${c.subcalls} sub-call batches, ${c.children} child RLMs.`;
  }

  rlm(path, depth = 0, parentPath = null) {
    let node = this.rlms.get(path);
    if (node) return node;
    const title = path === "0" ? "Root RLM" : `Child RLM ${path} (depth ${depth})`;
    const list = h("ol", { class: "turns", "aria-label": `${title}: turns` });
    const status = h("span", { class: "rlm-status" }, "running");
    const section = h("section", { class: "rlm", "data-path": path, "aria-label": title }, h("h4", {}, title, " · ", status), list);
    node = { section, list, status, turns: new Map(), lastTurn: null };
    this.rlms.set(path, node);
    const parent = parentPath !== null ? this.rlms.get(parentPath) : null;
    if (parent) {
      const host = parent.lastTurn ? parent.lastTurn.children : parent.list;
      host.append(section);
    } else {
      this.tree.append(section);
    }
    return node;
  }

  turnOf(path, turn) {
    const node = this.rlm(path);
    let t = node.turns.get(turn);
    if (!t) {
      const head = h("h5", {}, `Turn ${turn}`);
      const body = h("div", { class: "turn-body" });
      const children = h("div", { class: "children" });
      const li = h("li", { class: "turn", "data-turn": String(turn) }, head, body, children);
      t = { li, head, body, children };
      node.turns.set(turn, t);
      node.list.append(li);
      node.lastTurn = t;
    }
    return t;
  }

  turn(d) {
    const t = this.turnOf(d.path, d.turn);
    this.counts.turns += 1;
    const facts = [
      `${num(d.inputTokens)} in / ${num(d.outputTokens)} out tokens`,
      duration(d.latencyMs),
      d.cached ? "from the memo" : null,
      d.lastCall ? "last call (asked for the answer)" : null,
    ].filter(Boolean);
    t.head.textContent = `Turn ${d.turn}${d.maxIterations ? ` of ${d.maxIterations}` : ""} · ${facts.join(" · ")}`;
    t.body.prepend(
      h("details", { class: "reply", open: true }, h("summary", {}, "Model reply"), h("pre", {}, cut(d.reply))),
    );
  }

  cell(d) {
    const t = this.turnOf(d.path, d.turn);
    this.counts.cells += 1;
    const out = [];
    if (d.stdout) out.push(h("pre", { class: "stdout", "aria-label": "output" }, cut(d.stdout)));
    if (d.stderr) out.push(h("pre", { class: "stderr", "aria-label": "errors" }, cut(d.stderr)));
    if (d.error) out.push(h("p", { class: "error" }, "Error: ", cut(d.error)));
    if (d.killedReason) out.push(h("p", { class: "error" }, "Stopped: ", d.killedReason));
    const vars = Array.isArray(d.newVars) && d.newVars.length ? ` · new variables: ${d.newVars.join(", ")}` : "";
    t.body.append(
      h(
        "div",
        { class: "cell" },
        h("div", { class: "cell-head" }, `repl cell ${Number(d.index) + 1} · ${duration(d.durationMs)}${vars}`),
        h("pre", { class: "code", "aria-label": "code" }, cut(d.code)),
        out,
      ),
    );
  }

  subcalls(d) {
    const t = this.turnOf(d.path, d.turn);
    this.counts.subcalls += 1;
    const text = [
      `${d.kind} × ${num(d.count)}`,
      d.model ? `model ${d.model}` : null,
      `${num(d.inputTokens)} in / ${num(d.outputTokens)} out tokens`,
      duration(d.latencyMs),
      `${num(d.cached)} cached`,
      d.errors ? `${num(d.errors)} errors` : null,
    ].filter(Boolean);
    t.body.append(h("div", { class: "subcalls" + (d.errors ? " has-errors" : "") }, h("span", { class: "tag" }, "sub-calls"), " ", text.join(" · ")));
  }

  child(d) {
    if (d.phase === "started") {
      this.counts.children += 1;
      this.rlm(d.path, d.depth, d.parent);
      return;
    }
    const node = this.rlm(d.path, d.depth, d.parent);
    if (d.error) {
      node.status.textContent = "failed";
      node.section.classList.add("failed");
      node.section.append(h("p", { class: "error" }, "Error: ", cut(d.error)));
    } else {
      node.status.textContent = `ended after ${num(d.turns)} turns`;
      // rlm.answer of the same path usually came first: the answer is shown once.
      if (!node.answered) this.showAnswer(node, d.answer);
    }
  }

  answer(d) {
    const node = this.rlm(d.path);
    node.status.textContent = `answered after ${num(d.turns)} turns${d.forced ? " (forced)" : ""}`;
    this.showAnswer(node, d.answer);
  }

  showAnswer(node, answer) {
    node.answered = true;
    node.section.append(h("p", { class: "answer" }, "Answer: ", cut(typeof answer === "string" ? answer : JSON.stringify(answer))));
  }
}
