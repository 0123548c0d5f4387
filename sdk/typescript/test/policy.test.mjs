// The pure parts: retry policy, SSE decoding, error mapping, the package's surface.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import * as sdk from "../dist/index.js";

const {
  LineSplitter,
  MAX_RETRY_WAIT_MS,
  QuotaExceeded,
  RLMError,
  RateLimited,
  SSEDecoder,
  TaskTimeout,
  VERSION,
  backoffMs,
  errorFromResponse,
  parseRetryAfterMs,
  retryDelayMs,
} = sdk;

const headers = (entries = {}) => new Headers(entries);
const envelope = (code, details) => JSON.stringify({ error: { code, message: "m", details }, requestId: "req-1" });

test("Retry-After: delta-seconds or an HTTP date; anything else is ignored", () => {
  assert.equal(parseRetryAfterMs("3"), 3000);
  assert.equal(parseRetryAfterMs(" 1.5 "), 1500);
  const now = Date.parse("2026-01-01T00:00:00Z");
  assert.equal(parseRetryAfterMs("Thu, 01 Jan 2026 00:00:10 GMT", now), 10_000);
  assert.equal(parseRetryAfterMs("Wed, 31 Dec 2025 23:59:00 GMT", now), 0); // past: at once
  for (const junk of [null, undefined, "", "soon", "1e999x"]) assert.equal(parseRetryAfterMs(junk), undefined);
});

test("the backoff doubles per attempt, from the upper half of each step, up to 8 s", () => {
  assert.deepEqual(
    [0, 1, 2, 3, 4, 10].map((n) => backoffMs(n, () => 0)),
    [250, 500, 1000, 2000, 4000, 4000],
  );
  assert.deepEqual(
    [0, 1, 2, 3, 4, 10].map((n) => backoffMs(n, () => 0.999999)).map(Math.round),
    [500, 1000, 2000, 4000, 8000, 8000],
  );
});

test("what is retried and after how long", () => {
  const base = { attempt: 0, retriesLeft: 3, idempotent: true, bodyText: "" };
  const at = (status, extra = {}, h = {}) => retryDelayMs({ ...base, status, headers: headers(h), ...extra }, () => 0);
  assert.equal(at(429, {}, { "retry-after": "2" }), 2000);
  assert.equal(retryDelayMs({ ...base, status: 429, headers: headers({ "retry-after": "2" }) }, () => 1), 2200);
  assert.equal(at(429, { bodyText: envelope("RATE_LIMITED", { retryAfterS: 4 }) }), 4000); // header stripped
  assert.equal(at(429, { idempotent: false }, { "retry-after": "1" }), 1000); // refused: nothing ran
  assert.equal(at(429, { retriesLeft: 1 }, { "retry-after": "3600" }), undefined); // hours: fail fast
  assert.equal(at(429, {}, { "retry-after": "45" }), MAX_RETRY_WAIT_MS); // capped per sleep
  assert.equal(at(503), 250);
  assert.equal(at(503, { idempotent: false }), undefined);
  assert.equal(at(500, { bodyText: envelope("INTERNAL_ERROR", { result: { taskId: "t" } }) }), undefined);
  assert.equal(at(400), undefined);
  assert.equal(at(404), undefined);
  assert.equal(at(503, { retriesLeft: 0 }), undefined);
});

test("SSE: fields, multi-line data, comments, and line ends split across chunks", () => {
  const lines = new LineSplitter();
  const decoder = new SSEDecoder();
  const messages = [];
  const chunks = ["retry: 2000\r\n\r", "\n: keep-alive\n\nid: 7\nevent: task.progress\nda", "ta: {\"a\":\r\ndata: 1}\n\n", "id: 8\n"];
  for (const chunk of chunks) {
    for (const line of lines.push(chunk)) {
      const message = decoder.feed(line);
      if (message) messages.push(message);
    }
  }
  assert.deepEqual(messages, [{ event: "task.progress", data: '{"a":\n1}', id: "7", retry: 2000 }]);
  assert.equal(decoder.feed("data"), undefined);
  assert.deepEqual(decoder.feed(""), { event: "message", data: "", id: "8", retry: 2000 });
});

test("error answers become the class of their code, with status, requestId and details", () => {
  const quota = errorFromResponse(429, headers(), envelope("QUOTA_EXCEEDED", { resource: "daily" }));
  assert.ok(quota instanceof QuotaExceeded && quota instanceof RLMError && quota instanceof Error);
  assert.deepEqual([quota.code, quota.status, quota.requestId, quota.details.resource], ["QUOTA_EXCEEDED", 429, "req-1", "daily"]);
  const timeout = errorFromResponse(408, headers({ "x-request-id": "req-h" }), JSON.stringify({ error: { code: "TIMEOUT", message: "late" } }));
  assert.ok(timeout instanceof TaskTimeout);
  assert.equal(timeout.requestId, "req-h");
  assert.equal(timeout.message, "late");
  const newer = errorFromResponse(418, headers(), envelope("TEAPOT", ["x"]));
  assert.equal(newer.constructor, RLMError);
  assert.deepEqual([newer.code, newer.status, newer.details], ["TEAPOT", 418, { details: ["x"] }]);
  const limited = errorFromResponse(429, headers({ "retry-after": "7" }), envelope("RATE_LIMITED"));
  assert.ok(limited instanceof RateLimited);
  assert.equal(limited.retryAfterS, 7);
});

test("the package's surface: its version, the client, no runtime dependencies", () => {
  const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
  assert.equal(VERSION, pkg.version);
  assert.equal(pkg.name, "@rlm-hypervisor/sdk");
  assert.equal(pkg.dependencies, undefined);
  assert.equal(pkg.type, "module");
  for (const name of ["RLMClient", "RLMError", "verifyWebhook", "signWebhook", "TERMINAL_STATES"]) {
    assert.ok(name in sdk, name);
  }
});
