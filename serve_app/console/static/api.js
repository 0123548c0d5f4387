// The console's only way to the service: the public /v1 API with the signed-in token.
// The token lives in this module (and in the tab's sessionStorage when the user asks to keep
// it for the tab); it is sent in the Authorization header only, never in a URL or a log.

const API = new URL("../v1/", document.baseURI).pathname.replace(/\/$/, "");
const STORE_KEY = "rlm.console.token";

let token = null;

/** The token, from memory or the tab's session storage. */
export function currentToken() {
  if (token === null) token = sessionStorage.getItem(STORE_KEY);
  return token;
}

/** Sign in: keep the token (in this tab's session storage only when `keep`). */
export function setToken(value, keep) {
  token = value;
  if (keep) sessionStorage.setItem(STORE_KEY, value);
  else sessionStorage.removeItem(STORE_KEY);
}

/** Sign out: forget the token everywhere. */
export function clearToken() {
  token = null;
  sessionStorage.removeItem(STORE_KEY);
}

/**
 * What a token says about its bearer (its claims, read without verifying: the server
 * verifies it on every call; the console only uses them to know which team and org to show).
 */
export function claims() {
  const t = currentToken();
  if (!t) return {};
  try {
    const part = t.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const padded = part + "=".repeat((4 - (part.length % 4)) % 4);
    const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return {}; // not a JWT the console can read: it still works, without the team and org
  }
}

/** An error answer of the API (its envelope's code, message and details). */
export class ApiError extends Error {
  constructor(status, body) {
    const err = (body && body.error) || {};
    super(err.message || `HTTP ${status}`);
    this.status = status;
    this.code = err.code || "HTTP_" + status;
    this.details = err.details;
    this.requestId = body && body.requestId;
  }
}

function headers(extra = {}) {
  const out = { Accept: "application/json", ...extra };
  const t = currentToken();
  if (t) out.Authorization = `Bearer ${t}`;
  return out;
}

async function raise(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  throw new ApiError(response.status, body);
}

/** GET or POST a JSON route of /v1; resolves to the answer's JSON. */
export async function call(path, { method = "GET", body, signal } = {}) {
  const init = { method, signal, headers: headers(), cache: "no-store", credentials: "omit" };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(API + path, init);
  if (!response.ok) await raise(response);
  return response.json();
}

/** A route's raw answer (for downloads), errors raised as for `call`. */
export async function blob(path, accept) {
  const response = await fetch(API + path, {
    headers: headers({ Accept: accept }),
    cache: "no-store",
    credentials: "omit",
  });
  if (!response.ok) await raise(response);
  return response.blob();
}

// The longest the stream's reader works before it lets the page draw and answer input: a
// reconnect (or a page opened on a busy task) replays hundreds of buffered events, and reading
// them is a chain of microtasks that would otherwise run as one long main-thread task.
const SLICE_MS = 4;

function yieldToPage() {
  if (globalThis.scheduler && typeof scheduler.yield === "function") return scheduler.yield();
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/**
 * Stream a task's events (GET /v1/tasks/{id}/events, Server-Sent Events) with fetch, so the
 * token goes in a header (EventSource cannot send one). Reconnects with Last-Event-ID after a
 * dropped connection until task.completed; `onEvent(wire)` gets each event's wire form
 * ({id, event, timestamp, data}). Resolves when the task's last event arrived; rejects with
 * ApiError on a refusal (404 for a task the token may not see). `onOpen()` is called each
 * time the stream (re)connects.
 */
export async function streamEvents(taskId, onEvent, signal, onOpen = () => {}) {
  let after = 0;
  let failures = 0;
  const path = `${API}/tasks/${encodeURIComponent(taskId)}/events`;
  for (;;) {
    let ended = false;
    try {
      const h = headers({ Accept: "text/event-stream" });
      if (after > 0) h["Last-Event-ID"] = String(after);
      const response = await fetch(path, { headers: h, signal, cache: "no-store", credentials: "omit" });
      if (!response.ok) {
        if (response.status >= 500 || response.status === 429) throw new Error(`HTTP ${response.status}`);
        await raise(response);
      }
      onOpen();
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      let data = [];
      let slice = performance.now();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let nl;
        while ((nl = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, nl).replace(/\r$/, "");
          buffer = buffer.slice(nl + 1);
          if (line === "") {
            if (data.length) {
              const wire = JSON.parse(data.join("\n"));
              data = [];
              after = wire.id;
              failures = 0;
              onEvent(wire);
              if (wire.event === "task.completed") ended = true;
              if (performance.now() - slice > SLICE_MS) {
                await yieldToPage();
                slice = performance.now();
              }
            }
          } else if (line.startsWith("data:")) {
            data.push(line.slice(5).replace(/^ /, ""));
          }
          // id:, event:, retry: and ": keep-alive" comments: the data line carries all of it.
        }
        if (ended) {
          reader.cancel().catch(() => {});
          return;
        }
      }
    } catch (err) {
      if (err instanceof ApiError || (signal && signal.aborted)) throw err;
      failures += 1;
      if (failures > 8) throw err;
    }
    if (ended) return;
    await new Promise((resolve) => setTimeout(resolve, Math.min(500 * 2 ** failures, 8000)));
  }
}
