// client.execute and client.tasks against the live server.
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";

import { APITimeoutError, TaskNotFound } from "../dist/index.js";
import { client, proxy, slowTask, task } from "./live.mjs";

const alice = client("user");

async function collect(iterable) {
  const events = [];
  for await (const event of iterable) events.push(event);
  return events;
}

describe("execute", () => {
  test("runs the document's example and returns its result", async () => {
    const result = await alice.execute(
      task([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], "sum", { options: { timeoutMs: 30000, priority: "normal" } }),
    );
    assert.equal(result.status, "completed");
    assert.equal(result.output, 55);
    assert.equal(result.success, true);
    assert.match(result.taskId, /^task-/);
    assert.ok(result.agentCalls >= 1);
    const status = await alice.tasks.get(result.taskId);
    assert.equal(status.status, "completed");
    assert.deepEqual(status.result?.output, 55);
  });

  test("submit returns at once; wait polls to the result", async () => {
    const started = performance.now();
    const taskId = await alice.submit(slowTask(2, 0.4));
    assert.ok(performance.now() - started < 400, "submit waited for the task");
    assert.notEqual((await alice.tasks.get(taskId)).status, "completed");
    const result = await alice.tasks.wait(taskId, { pollIntervalMs: 50 });
    assert.equal(result.output, 3);
    assert.equal(result.taskId, taskId);
  });

  test("a request asking for async mode is followed to its result when waiting", async () => {
    const pending = await alice.execute({ ...slowTask(2, 0.2), options: { leafSize: 1, async: true } }, { wait: false });
    assert.ok(["pending", "running"].includes(pending.status), pending.status);
    const result = await alice.execute({ ...slowTask(2, 0.2), options: { leafSize: 1, async: true } });
    assert.equal(result.status, "completed"); // answered 202, then polled to the end
    assert.equal(result.output, 3);
    assert.equal((await alice.tasks.wait(pending.taskId)).output, 3);
  });

  test("wait gives up after waitMs and the task keeps running", async () => {
    const taskId = await alice.submit(slowTask(2, 3));
    await assert.rejects(alice.tasks.wait(taskId, { waitMs: 300, pollIntervalMs: 50 }), (err) => {
      assert.ok(err instanceof APITimeoutError);
      assert.equal(err.details.taskId, taskId);
      return true;
    });
    const cancelled = await alice.tasks.cancel(taskId);
    assert.equal(cancelled.status, "cancelled");
    assert.equal(cancelled.taskId, taskId);
    assert.equal((await alice.tasks.get(taskId)).status, "cancelled");
    const again = await alice.tasks.cancel(taskId);
    assert.notEqual(again.status, "cancelled"); // nothing left to cancel the second time
  });

  test("an aborted signal stops the call", async () => {
    const controller = new AbortController();
    const pending = alice.execute(slowTask(1, 2), { signal: controller.signal });
    setTimeout(() => controller.abort(new Error("stop")), 100);
    await assert.rejects(pending, /stop/);
  });
});

describe("tasks", () => {
  test("another tenant's task is not found, with the request's id", async () => {
    const { taskId } = await alice.execute(task([1, 2, 3]));
    await assert.rejects(client("other").tasks.get(taskId), (err) => {
      assert.ok(err instanceof TaskNotFound);
      assert.equal(err.code, "TASK_NOT_FOUND");
      assert.equal(err.status, 404);
      assert.match(err.requestId, /^req-/);
      return true;
    });
    assert.equal((await client("other").tasks.cancel(taskId).catch((e) => e)).status, 404);
  });

  test("list shows the caller's newest tasks first", async () => {
    const first = (await alice.execute(task([1]))).taskId;
    const second = (await alice.execute(task([2]))).taskId;
    // Other test files may run tasks of this user meanwhile: look at the order, not the top two.
    const listed = (await alice.tasks.list({ limit: 50 })).map((t) => t.taskId);
    assert.ok(listed.indexOf(second) !== -1 && listed.indexOf(second) < listed.indexOf(first), listed);
    assert.equal((await alice.tasks.list({ limit: 1 })).length, 1);
    const others = (await client("other").tasks.list({ limit: 50 })).map((t) => t.taskId);
    assert.ok(!others.includes(first));
  });

  test("list filters on the server and listPage follows the cursor", async () => {
    const lister = client("lister");
    const since = new Date();
    const made = [];
    for (const op of ["sum", "max", "sum"]) made.push((await lister.execute(task([1, 2], op))).taskId);
    const sums = await lister.tasks.list({ operation: "sum", status: ["completed"], since });
    assert.deepEqual(sums.map((t) => t.taskId), [made[2], made[0]]);
    assert.deepEqual(await lister.tasks.list({ status: "running", since }), []);
    const seen = [];
    let page = await lister.tasks.listPage({ limit: 2, since });
    seen.push(...page.tasks.map((t) => t.taskId));
    assert.ok(page.nextCursor, "two of three tasks: a next page");
    page = await lister.tasks.listPage({ limit: 2, since, cursor: page.nextCursor });
    seen.push(...page.tasks.map((t) => t.taskId));
    assert.equal(page.nextCursor, undefined);
    assert.deepEqual(seen, [...made].reverse());
    await assert.rejects(lister.tasks.list({ status: "finished" }), (err) => err.code === "INVALID_INPUT");
    await assert.rejects(lister.tasks.listPage({ cursor: "garbage" }), (err) => err.status === 400);
  });
});

describe("events", () => {
  test("streams a task's events live, in order, to task.completed", async () => {
    const taskId = await alice.submit(slowTask(4, 0.3));
    const events = await collect(alice.tasks.events(taskId));
    assert.deepEqual(
      events.map((e) => e.id),
      events.map((_, i) => i + 1),
    );
    const kinds = events.map((e) => e.event);
    assert.equal(kinds[0], "task.started");
    assert.ok(kinds.includes("task.progress"));
    assert.equal(kinds.at(-1), "task.completed");
    assert.equal(events.at(-1).data.result.output, 10);
    const progress = events.filter((e) => e.event === "task.progress").map((e) => e.data.percent);
    assert.deepEqual(progress, [...progress].sort((a, b) => a - b));
    assert.equal(progress.at(-1), 100);

    const resumed = await collect(alice.tasks.events(taskId, { lastEventId: 2 }));
    assert.deepEqual(resumed, events.slice(2));
  });

  test("a dropped stream resumes after the last event received (Last-Event-ID)", async () => {
    const taskId = await alice.submit(slowTask(4, 0.4));
    let streams = 0;
    const flaky = await proxy((req) => {
      if (!req.url.includes("/events")) return "forward";
      streams += 1;
      return streams === 1 ? { cutAfterEvents: 1 } : "forward";
    });
    after(flaky.close);
    const viaProxy = client("user", { baseUrl: flaky.baseUrl });
    const events = [];
    const receivedAt = [];
    for await (const event of viaProxy.tasks.events(taskId)) {
      events.push(event);
      receivedAt.push(performance.now());
    }
    const opens = flaky.seen.filter((r) => r.url.includes("/events"));
    assert.ok(opens.length >= 2, "the stream was not reopened");
    assert.equal(opens[0].headers["last-event-id"], undefined);
    // The reopened stream starts after the last event the iterator had yielded by then.
    const before = events.filter((_, i) => receivedAt[i] < opens[1].at);
    assert.ok(before.length >= 1);
    assert.equal(opens[1].headers["last-event-id"], String(before.at(-1).id));
    assert.deepEqual(
      events.map((e) => e.id),
      events.map((_, i) => i + 1),
    );
    assert.equal(events.at(-1).event, "task.completed");
    assert.equal(events.at(-1).data.result.output, 10);
  });

  test("leaving the loop early releases the stream; an unknown task is a typed error", async () => {
    const taskId = await alice.submit(slowTask(2, 0.2));
    for await (const event of alice.tasks.events(taskId)) {
      assert.equal(event.id, 1);
      break;
    }
    assert.equal((await alice.tasks.wait(taskId)).output, 3);
    await assert.rejects(collect(alice.tasks.events("task-none")), TaskNotFound);
  });
});
