// Typed errors, retries honouring Retry-After with jitter, timeouts and network failures:
// against the live server, and through a proxy in front of it that fails on purpose.
import assert from "node:assert/strict";
import http from "node:http";
import { after, describe, test } from "node:test";

import {
  APIConnectionError,
  APITimeoutError,
  Forbidden,
  InternalError,
  InvalidInput,
  MAX_RETRY_WAIT_MS,
  RLMClient,
  RLMError,
  RateLimited,
  Unauthorized,
} from "../dist/index.js";
import { BASE_URL, TOKENS, client, proxy, task } from "./live.mjs";

/** A sleep that records what it was asked to wait and returns at once. */
function recordingSleep() {
  const waits = [];
  const sleep = async (ms) => {
    waits.push(ms);
  };
  return { waits, sleep };
}

describe("the error envelope", () => {
  test("no token: Unauthorized, with code, status and the request's id", async () => {
    const anonymous = new RLMClient({ baseUrl: BASE_URL, apiKey: "" });
    await assert.rejects(anonymous.tasks.list(), (err) => {
      assert.ok(err instanceof Unauthorized && err instanceof RLMError);
      assert.equal(err.code, "UNAUTHORIZED");
      assert.equal(err.status, 401);
      assert.match(err.requestId, /^req-/);
      assert.equal(err.name, "Unauthorized");
      return true;
    });
    assert.equal((await anonymous.health()).status, "ok"); // health needs no token
  });

  test("a token without the route's scope: Forbidden", async () => {
    await assert.rejects(client("executeOnly").tasks.list(), (err) => {
      assert.ok(err instanceof Forbidden);
      assert.equal(err.status, 403);
      assert.equal(err.code, "FORBIDDEN");
      return true;
    });
  });

  test("an invalid request: InvalidInput naming the field, not retried", async () => {
    const { waits, sleep } = recordingSleep();
    const user = client("user", { sleep });
    await assert.rejects(user.execute(task([1, 2], "no_such_operation")), (err) => {
      assert.ok(err instanceof InvalidInput);
      assert.equal(err.status, 400);
      assert.equal(err.details.field, "input.operation");
      assert.ok(err.details.available.includes("sum"));
      return true;
    });
    assert.deepEqual(waits, []);
  });

  test("an answer without the envelope is an InternalError with an excerpt of it", async () => {
    const html = await proxy(() => ({ status: 404, headers: { "content-type": "text/html" }, body: "<h1>nope</h1>" }));
    after(html.close);
    await assert.rejects(client("user", { baseUrl: html.baseUrl }).tasks.get("t"), (err) => {
      assert.ok(err instanceof InternalError);
      assert.equal(err.status, 404);
      assert.equal(err.details.body, "<h1>nope</h1>");
      return true;
    });
    assert.equal(html.seen.length, 1); // a 404 is not retried
  });
});

describe("retries", () => {
  test("429 RATE_LIMITED waits for Retry-After (with jitter, never less), then gives up", async () => {
    // The anonymous tier allows 10 requests a minute.
    const limited = client("anonymous", { maxRetries: 0 });
    for (let i = 0; i < 10; i++) await limited.tasks.list({ limit: 1 });
    let retryAfterS;
    await assert.rejects(limited.tasks.list({ limit: 1 }), (err) => {
      assert.ok(err instanceof RateLimited);
      assert.equal(err.status, 429);
      assert.equal(err.code, "RATE_LIMITED");
      retryAfterS = Number(err.headers.get("retry-after"));
      assert.ok(retryAfterS >= 1 && retryAfterS <= 60, String(retryAfterS));
      assert.ok(err.retryAfterS > 0);
      return true;
    });
    // The same caller with retries: each wait is the server's Retry-After, lengthened by up to
    // 10 % and capped at MAX_RETRY_WAIT_MS; the last refusal is thrown.
    const { waits, sleep } = recordingSleep();
    const seen = [];
    const fetchAndRecord = async (url, init) => {
      const response = await fetch(url, init);
      seen.push(Number(response.headers.get("retry-after")));
      return response;
    };
    const retrying = client("anonymous", { maxRetries: 2, sleep, fetch: fetchAndRecord });
    await assert.rejects(retrying.tasks.list({ limit: 1 }), RateLimited);
    const retriesLeft = [2, 1];
    const expected = seen.slice(0, 2).map((s, i) => (s * 1000 > MAX_RETRY_WAIT_MS * retriesLeft[i] ? undefined : s * 1000));
    const slept = expected.findIndex((e) => e === undefined);
    assert.equal(waits.length, slept === -1 ? 2 : slept, `waits ${waits} for Retry-After ${seen}`);
    waits.forEach((ms, i) => {
      const floor = Math.min(expected[i], MAX_RETRY_WAIT_MS);
      assert.ok(ms >= floor && ms <= Math.min(floor * 1.1, MAX_RETRY_WAIT_MS), `${ms} for ${seen[i]} s`);
    });
  });

  test("a lost answer to execute is retried with the same Idempotency-Key: one task, not two", async () => {
    const { waits, sleep } = recordingSleep();
    const lossy = await proxy((req, n) =>
      n === 1 ? { thenAnswer: { status: 503, headers: { "retry-after": "1" }, body: "down" } } : "forward",
    );
    after(lossy.close);
    const user = client("retrier", { baseUrl: lossy.baseUrl, sleep });
    assert.deepEqual(await client("retrier").tasks.list(), []);
    const result = await user.execute(task([4, 5, 6]));
    assert.equal(result.output, 15);
    const [first, second] = lossy.seen;
    assert.equal(lossy.seen.length, 2);
    assert.ok(first.headers["idempotency-key"]);
    assert.equal(second.headers["idempotency-key"], first.headers["idempotency-key"]);
    assert.equal(waits.length, 1);
    assert.ok(waits[0] >= 1000 && waits[0] <= 1100, String(waits[0])); // Retry-After: 1, jittered
    // The server ran the first attempt; the retry answered that same task.
    const tasks = await client("retrier").tasks.list();
    assert.deepEqual(
      tasks.map((t) => t.taskId),
      [result.taskId],
    );
  });

  test("a 5xx without Retry-After backs off with jitter; non-idempotent calls are not repeated", async () => {
    const { waits, sleep } = recordingSleep();
    const failing = await proxy(() => ({ status: 502, body: "bad gateway" }));
    after(failing.close);
    const draws = [0, 1, 0.5];
    const user = client("user", { baseUrl: failing.baseUrl, sleep, maxRetries: 3, random: () => draws.shift() ?? 0 });
    await assert.rejects(user.tasks.get("task-x"), (err) => err instanceof InternalError && err.status === 502);
    assert.equal(failing.seen.length, 4);
    assert.deepEqual(waits, [250, 1000, 1500]); // 500·2^n ms, drawn from its upper half
    const before = failing.seen.length;
    await assert.rejects(user.webhooks.delete("wh-x"), InternalError); // a DELETE is not repeated
    assert.equal(failing.seen.length, before + 1);
  });

  test("no answer within timeoutMs: APITimeoutError; an idempotent call is tried again", async () => {
    const silent = await proxy(() => "hang");
    after(silent.close);
    const { sleep } = recordingSleep();
    const user = client("user", { baseUrl: silent.baseUrl, timeoutMs: 200, maxRetries: 1, sleep });
    const started = performance.now();
    await assert.rejects(user.tasks.get("task-x"), (err) => err instanceof APITimeoutError && err.status === 0);
    assert.equal(silent.seen.length, 2);
    assert.ok(performance.now() - started < 2000);
    // The server may have acted on a request it did not answer: a create is not repeated.
    await assert.rejects(user.webhooks.create({ url: "https://example.com/h", events: ["task.completed"] }), APITimeoutError);
    assert.equal(silent.seen.length, 3);
  });

  test("a refused connection: APIConnectionError naming the cause, after the retries", async () => {
    const closed = http.createServer();
    await new Promise((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const { port } = closed.address();
    await new Promise((resolve) => closed.close(resolve));
    const { waits, sleep } = recordingSleep();
    const nowhere = new RLMClient({ apiKey: TOKENS.user, baseUrl: `http://127.0.0.1:${port}/v1`, sleep, maxRetries: 2 });
    const refused = (err) => {
      assert.ok(err instanceof APIConnectionError && !(err instanceof APITimeoutError));
      assert.equal(err.details.code, "ECONNREFUSED");
      assert.equal(err.status, 0);
      return true;
    };
    // Nothing was sent, so even a call that is never repeated after a lost answer may be.
    await assert.rejects(nowhere.webhooks.create({ url: "https://example.com/h", events: ["task.completed"] }), refused);
    assert.equal(waits.length, 2);
    await assert.rejects(nowhere.execute(task([1])), refused);
    assert.equal(waits.length, 4);
  });
});

describe("the client's options", () => {
  test("bad options are refused at construction; the key never shows", () => {
    assert.throws(() => new RLMClient({ timeoutMs: 0 }), RangeError);
    assert.throws(() => new RLMClient({ maxRetries: -1 }), RangeError);
    assert.throws(() => new RLMClient({ baseUrl: "not a url" }), TypeError);
    const c = new RLMClient({ apiKey: "secret-token", baseUrl: BASE_URL + "/", region: "us-west-2" });
    assert.equal(c.baseUrl, BASE_URL);
    assert.equal(c.region, "us-west-2");
    assert.ok(!String(c).includes("secret-token"));
    assert.ok(!JSON.stringify(c).includes("secret-token"));
  });

  test("baseUrl and apiKey default to RLM_BASE_URL and RLM_API_KEY", async () => {
    process.env.RLM_API_KEY = TOKENS.user;
    try {
      const fromEnv = new RLMClient();
      assert.equal(fromEnv.baseUrl, BASE_URL);
      assert.equal((await fromEnv.execute(task([1, 2]))).output, 3);
    } finally {
      delete process.env.RLM_API_KEY;
    }
  });
});
