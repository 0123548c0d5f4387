// What the live tests share: the server's base URL and tokens (from the environment the pytest
// runner sets, tests/api/test_sdk_typescript.py), clients, and a forwarding proxy that can
// fail on purpose in front of the real server.
import assert from "node:assert/strict";
import http from "node:http";

import { RLMClient } from "../dist/index.js";

function required(name) {
  const value = process.env[name];
  // A missing variable fails the run: these tests never pass by not running.
  assert.ok(value, `${name} is not set: run these tests through tests/api/test_sdk_typescript.py`);
  return value;
}

export const BASE_URL = required("RLM_BASE_URL");
/** Tokens by role: user, other, retrier, lister, executeOnly, anonymous, manager. */
export const TOKENS = JSON.parse(required("RLM_TEST_TOKENS"));
/** A tag unique to this run (org, team and user names). */
export const TAG = required("RLM_TEST_TAG");

/** A client of `role`'s token against the live server. */
export function client(role, options = {}) {
  return new RLMClient({ apiKey: TOKENS[role], baseUrl: BASE_URL, ...options });
}

/** The API document's example request, with `items` and `operation` of our choosing. */
export function task(items, operation = "sum", extra = {}) {
  return { type: "recursive", description: "Process items", input: { items, operation }, ...extra };
}

/** A task that runs about `seconds` per leaf (the test operations of tests/integration/ops.py). */
export function slowTask(leaves, seconds) {
  return {
    type: "parallel",
    description: "slow",
    input: { items: Array.from({ length: leaves }, (_, i) => i + 1), operation: "slow_sum", params: { seconds } },
    options: { leafSize: 1 },
  };
}

/**
 * A proxy in front of the live server. `decide(req, n)` (n: 1-based count of requests seen)
 * returns "forward", { status, headers, body } to answer itself, or { cutAfterEvents: k } to
 * forward a stream and drop the connection after k SSE messages, { thenAnswer: {status...} } to
 * forward the request but answer the client with something else, or "hang" to never answer.
 */
export async function proxy(decide) {
  const target = new URL(BASE_URL);
  const seen = [];
  const server = http.createServer(async (req, res) => {
    seen.push({ method: req.method, url: req.url, headers: { ...req.headers }, at: performance.now() });
    const choice = decide(req, seen.length);
    if (choice === "hang") return; // never answers: the client's timeout must fire
    if (choice !== "forward" && choice.status !== undefined) {
      res.writeHead(choice.status, choice.headers ?? {});
      res.end(choice.body ?? "");
      return;
    }
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const upstream = http.request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        if (choice.thenAnswer !== undefined) {
          // The server acted, but its answer is lost: the client sees this one instead.
          answer.resume();
          answer.on("end", () => {
            res.writeHead(choice.thenAnswer.status, choice.thenAnswer.headers ?? {});
            res.end(choice.thenAnswer.body ?? "");
          });
          return;
        }
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        let messages = 0;
        let cut = false;
        answer.on("data", (data) => {
          if (cut) return;
          res.write(data);
          if (choice.cutAfterEvents === undefined) return;
          messages += (data.toString("utf8").match(/\nevent: /g) ?? []).length;
          if (messages >= choice.cutAfterEvents && !cut) {
            cut = true;
            answer.destroy();
            // Once the client has had what was written, the connection drops mid-stream, as on
            // a flaky network.
            setTimeout(() => res.socket?.destroy(), 100);
          }
        });
        answer.on("end", () => cut || res.end());
      },
    );
    upstream.on("error", () => res.socket?.destroy());
    upstream.end(Buffer.concat(chunks));
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  const basePath = target.pathname.replace(/\/$/, "");
  return {
    baseUrl: `http://127.0.0.1:${port}${basePath}`,
    seen,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(resolve);
      }),
  };
}
