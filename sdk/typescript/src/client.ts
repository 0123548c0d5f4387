/**
 * `RLMClient`: the TypeScript client of the RLM Hypervisor API.
 *
 * @module
 */

import { randomUUID } from "node:crypto";

import { type Fetch, type RequestOptions, Transport, sleep } from "./http.js";
import { QuotasAPI } from "./resources/quotas.js";
import { SecurityAPI } from "./resources/security.js";
import { object } from "./resources/shared.js";
import { StorageAPI } from "./resources/storage.js";
import { TERMINAL_STATES, TasksAPI } from "./resources/tasks.js";
import { EvaluationsAPI } from "./resources/evaluations.js";
import { WebhooksAPI } from "./resources/webhooks.js";
import type { Random } from "./retry.js";
import type { ExecuteRequest, ExecuteResponse } from "./types.js";

/** Where the API listens when neither `baseUrl` nor `RLM_BASE_URL` says otherwise. */
export const DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1";
/** How long the server lets a task without `options.timeoutMs` run. */
export const DEFAULT_SERVER_TASK_TIMEOUT_MS = 600_000;
/** Extra wait over a task's budget, so the server's `TIMEOUT` answer wins the race. */
export const EXECUTE_GRACE_MS = 10_000;

/** What `new RLMClient(...)` takes. */
export interface RLMClientOptions {
  /** The bearer token (a JWT); defaults to `$RLM_API_KEY`. Without one only `health()` works. */
  apiKey?: string | undefined;
  /** Defaults to `$RLM_BASE_URL`, else `http://127.0.0.1:8000/v1`. */
  baseUrl?: string | undefined;
  /** Kept for the hosted API (`us-west-2`...); changes nothing against your own service. */
  region?: string | undefined;
  /** Per HTTP request, in ms (default 60 000); a synchronous execute waits for its task. */
  timeoutMs?: number | undefined;
  /** Repeats allowed per call (default 3; 0 disables); see the retry policy. */
  maxRetries?: number | undefined;
  /** A `fetch` to send with (default: the global one; tests pass their own). */
  fetch?: Fetch | undefined;
  /** @internal How to pause between retries and polls. */
  sleep?: ((ms: number, signal?: AbortSignal) => Promise<void>) | undefined;
  /** @internal The jitter's random source. */
  random?: Random | undefined;
}

/** Options of {@link RLMClient.execute}. */
export interface ExecuteCallOptions extends RequestOptions {
  /**
   * `true` (default) resolves with the finished result (a 202 is polled to the end); `false`
   * submits in async mode and resolves at once with `status: "pending"` and the `taskId`.
   */
  wait?: boolean | undefined;
  /**
   * Sent as `Idempotency-Key` (default: a new one per call, reused by the SDK's retries, so a
   * retry never runs the task twice). Pass your own to make repeats of your whole call safe.
   */
  idempotencyKey?: string | undefined;
}

function env(name: string): string | undefined {
  const value = process.env[name];
  return value === undefined || value === "" ? undefined : value;
}

/**
 * A client of the RLM Hypervisor API.
 *
 * @example
 * ```ts
 * import { RLMClient } from '@rlm-hypervisor/sdk';
 *
 * const client = new RLMClient({ apiKey: process.env.RLM_API_KEY });
 * const result = await client.execute({
 *   type: 'recursive',
 *   description: 'Process items recursively',
 *   input: { items: [1, 2, 3, 4, 5], operation: 'sum' }
 * });
 * console.log(result.output); // 15
 * ```
 */
export class RLMClient {
  /** The API's base URL, e.g. `http://127.0.0.1:8000/v1`. */
  readonly baseUrl: string;
  /** The region asked for (kept for the hosted API). */
  readonly region: string | undefined;
  /** Per-request timeout in ms. */
  readonly timeoutMs: number;
  /** Repeats allowed per call. */
  readonly maxRetries: number;
  /** Status, cancellation, waiting, listing, events, trajectories. */
  readonly tasks: TasksAPI;
  /** User, team and organisation quotas. */
  readonly quotas: QuotasAPI;
  /** Byte-range reads. */
  readonly storage: StorageAPI;
  /** Input validation, audit log, policies. */
  readonly security: SecurityAPI;
  /** Webhook endpoints, deliveries, and verifying what arrives. */
  readonly webhooks: WebhooksAPI;
  /** Evaluation runs recorded by the API. */
  readonly evaluations: EvaluationsAPI;
  readonly #http: Transport;

  constructor(options: RLMClientOptions = {}) {
    const timeoutMs = options.timeoutMs ?? 60_000;
    const maxRetries = options.maxRetries ?? 3;
    if (!(timeoutMs > 0)) throw new RangeError(`timeoutMs must be positive, got ${timeoutMs}`);
    if (!Number.isInteger(maxRetries) || maxRetries < 0) {
      throw new RangeError(`maxRetries must be an integer >= 0, got ${maxRetries}`);
    }
    const fetchImpl = options.fetch ?? globalThis.fetch;
    if (typeof fetchImpl !== "function") throw new Error("no fetch: Node 20 or later is needed (or pass options.fetch)");
    // Read at construction, never at import: apps and tests set the environment late.
    this.baseUrl = (options.baseUrl ?? env("RLM_BASE_URL") ?? DEFAULT_BASE_URL).replace(/\/+$/, "");
    new URL(this.baseUrl); // throws a TypeError naming the bad URL now, not at the first call
    this.region = options.region;
    this.timeoutMs = timeoutMs;
    this.maxRetries = maxRetries;
    this.#http = new Transport({
      baseUrl: this.baseUrl,
      apiKey: options.apiKey ?? env("RLM_API_KEY"),
      timeoutMs,
      maxRetries,
      fetch: fetchImpl,
      sleep: options.sleep ?? sleep,
      random: options.random ?? Math.random,
    });
    this.tasks = new TasksAPI(this.#http);
    this.quotas = new QuotasAPI(this.#http);
    this.storage = new StorageAPI(this.#http);
    this.security = new SecurityAPI(this.#http);
    this.webhooks = new WebhooksAPI(this.#http);
    this.evaluations = new EvaluationsAPI(this.#http);
  }

  /**
   * Run a task: `POST /execute`, with an `Idempotency-Key`.
   *
   * @returns The finished result (or, with `wait: false`, the pending task).
   * @throws {@link InvalidInput} the request is not valid.
   * @throws {@link QuotaExceeded} / {@link RateLimited} after the retries `Retry-After` allows.
   * @throws {@link TaskTimeout} the task ran past `options.timeoutMs`.
   * @throws {@link RLMError} any other error answer, as its class.
   */
  async execute(request: ExecuteRequest, options: ExecuteCallOptions = {}): Promise<ExecuteResponse> {
    const wait = options.wait ?? true;
    const headers: Record<string, string> = { "Idempotency-Key": options.idempotencyKey ?? randomUUID() };
    let body: ExecuteRequest = request;
    let timeoutMs: number | undefined;
    if (!wait) {
      body = { ...request, options: { ...request.options, async: true } };
      headers["Prefer"] = "respond-async";
    } else if (!request.options?.async) {
      // A synchronous execute holds the connection for the whole task.
      const budget = request.options?.timeoutMs ?? DEFAULT_SERVER_TASK_TIMEOUT_MS;
      timeoutMs = Math.max(options.timeoutMs ?? this.timeoutMs, budget + EXECUTE_GRACE_MS);
    }
    const result = await this.#http.send(
      {
        method: "POST",
        path: "/execute",
        json: body,
        headers,
        timeoutMs,
        parse: object<ExecuteResponse>("ExecuteResponse"),
      },
      { signal: options.signal, timeoutMs: timeoutMs ?? options.timeoutMs },
    );
    if (wait && !TERMINAL_STATES.has(result.status)) {
      return this.tasks.wait(result.taskId, { signal: options.signal });
    }
    return result;
  }

  /** Start a task in async mode and return its `taskId` (follow it with `client.tasks`). */
  async submit(request: ExecuteRequest, options: Omit<ExecuteCallOptions, "wait"> = {}): Promise<string> {
    return (await this.execute(request, { ...options, wait: false })).taskId;
  }

  /** `GET /health`: the service's and the engine's load; needs no credentials. */
  health(options?: RequestOptions): Promise<Record<string, unknown>> {
    return this.#http.send({ method: "GET", path: "/health", parse: object<Record<string, unknown>>("health") }, options);
  }

  /** The API key stays out of logs: only whether one is set is shown. */
  toString(): string {
    return `RLMClient(baseUrl=${JSON.stringify(this.baseUrl)}, apiKey=${this.#http.settings.apiKey ? "set" : "unset"})`;
  }

  /** @internal Node's `util.inspect` (console.log) shows the same as {@link toString}. */
  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return this.toString();
  }
}
