// client.quotas.usage (usage over time) and client.evaluations (recorded evaluation runs).
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { EvaluationNotFound, Forbidden, InvalidInput } from "../dist/index.js";
import { TAG, client, task } from "./live.mjs";

function mode(accuracy, costUsd) {
  return {
    questions: 2,
    accuracy,
    errors: 0,
    latencyMs: { p50: 120, p95: 180 },
    agentCalls: 3,
    lmCalls: 2,
    cachedCalls: 0,
    inputTokens: 200,
    outputTokens: 10,
    costUsd,
    byKind: { count: accuracy },
  };
}

const REPORT = {
  benchmark: "oolong-synth",
  config: { modes: ["direct", "rlm"], questions: 2 },
  windows: [{ index: 0, lines: 10, tokens: 300 }],
  questions: [{ id: "w0-0-count", window: 0, kind: "count", question: "How many?", gold: 1 }],
  modes: { direct: mode(0.5, 0.01), rlm: mode(1, 0.05) },
  results: [{ mode: "rlm", questionId: "w0-0-count", score: 1, status: "completed" }],
};

describe("usage over time", () => {
  test("the caller's series adds up to its daily window, per hour and per day", async () => {
    const retrier = client("retrier");
    await retrier.execute(task([1, 2, 3, 4]));
    const used = (await retrier.quotas.getStatus()).daily.agentsUsed;
    assert.ok(used > 0);
    const day = await retrier.quotas.usage();
    assert.equal(day.level, "user");
    assert.equal(day.id, `retrier-${TAG}`);
    assert.equal(day.bucket, "hour");
    assert.equal(day.total.agentsUsed, used);
    assert.equal(day.buckets.reduce((n, b) => n + b.agentsUsed, 0), used);
    const week = await retrier.quotas.usage({ period: "weekly", bucket: "day" });
    assert.equal(week.total.agentsUsed, used);
    assert.equal(week.buckets.length, ((new Date().getUTCDay() + 6) % 7) + 1);
  });

  test("another user's series is refused; a bad period is invalid input", async () => {
    const other = client("other");
    await assert.rejects(other.quotas.usage({ userId: `retrier-${TAG}` }), Forbidden);
    await assert.rejects(other.quotas.usage({ period: "yearly" }), InvalidInput);
    assert.throws(() => other.quotas.usage({ teamId: "t", orgId: "o" }), TypeError);
  });
});

describe("evaluation runs", () => {
  test("a run is recorded, listed and read back by its org; others get EvaluationNotFound", async () => {
    const manager = client("manager");
    const run = await manager.evaluations.record(REPORT);
    assert.match(run.runId, /^eval_/);
    assert.equal(run.orgId, `corp-${TAG}`);
    assert.deepEqual(run.modes, REPORT.modes);
    const listed = await manager.evaluations.list({ limit: 10 });
    assert.equal(listed[0].runId, run.runId);
    assert.equal(listed[0].results, undefined);
    const whole = await manager.evaluations.get(run.runId);
    assert.deepEqual(whole.results, REPORT.results);
    const other = client("other");
    await assert.rejects(other.evaluations.get(run.runId), (err) => {
      assert.ok(err instanceof EvaluationNotFound);
      assert.equal(err.status, 404);
      assert.deepEqual(err.details, { runId: run.runId });
      return true;
    });
    assert.ok((await other.evaluations.list()).every((r) => r.runId !== run.runId));
  });

  test("scopes and validation", async () => {
    await assert.rejects(client("executeOnly").evaluations.list(), Forbidden);
    await assert.rejects(client("anonymous").evaluations.record(REPORT), Forbidden);
    const bad = { ...REPORT, modes: { direct: { ...mode(0.5, 0.01), accuracy: 7 } } };
    await assert.rejects(client("user").evaluations.record(bad), InvalidInput);
  });
});
