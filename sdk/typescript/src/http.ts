/**
 * The transport: one request as data ({@link Call}), sent with the client's credentials over
 * the built-in `fetch`, repeated as {@link module:retry} allows, and answered as a value or a
 * typed error ({@link module:errors}).
 *
 * @module
 */

import {
  APIConnectionError,
  APITimeoutError,
  RLMError,
  errorFromResponse,
} from "./errors.js";
import { backoffMs, networkErrorCode, networkErrorIsRetryable, retryDelayMs, type Random } from "./retry.js";
import { VERSION } from "./version.js";

/** A query string's values; `undefined` ones are left out. */
export type Query = Record<string, string | number | boolean | undefined>;

/** A successful answer, its body read whole. */
export interface Answer {
  status: number;
  headers: Headers;
  /** The body's bytes. */
  body: Uint8Array;
  /** The body as UTF-8 text. */
  text(): string;
}

/** One API call: what to send and how to read its successful answer. */
export interface Call<T> {
  method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
  /** The path under the base URL, ids already percent-encoded. */
  path: string;
  query?: Query | undefined;
  /** A JSON body. */
  json?: unknown;
  headers?: Record<string, string> | undefined;
  /** Whether a repeat after a 5xx or a lost answer is safe (default `true`). */
  idempotent?: boolean;
  /** This call's timeout, overriding the client's (a synchronous execute waits longer). */
  timeoutMs?: number | undefined;
  /** Reads the 2xx answer. */
  parse: (answer: Answer) => T;
}

/** Options every method of the client takes last. */
export interface RequestOptions {
  /** Abort the call (and its retries) when this signal fires. */
  signal?: AbortSignal | undefined;
  /** Overrides the client's `timeoutMs` for this call. */
  timeoutMs?: number | undefined;
}

/** `fetch` as the transport uses it (the global one, or a test's). */
export type Fetch = (input: string, init: RequestInit) => Promise<Response>;

/** What the transport is built from (the client's resolved options). */
export interface TransportSettings {
  baseUrl: string;
  apiKey: string | undefined;
  timeoutMs: number;
  maxRetries: number;
  fetch: Fetch;
  sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  random: Random;
}

const USER_AGENT = `rlm-hypervisor-typescript/${VERSION} node/${process.versions.node}`;

/** Resolves after `ms`, or rejects with the signal's reason when it fires first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

function answerOf(status: number, headers: Headers, body: Uint8Array): Answer {
  let text: string | undefined;
  return {
    status,
    headers,
    body,
    text: () => (text ??= new TextDecoder().decode(body)),
  };
}

/** A signal that fires after `timeoutMs` or when `outer` fires, and a way to stop its timer. */
interface Deadline {
  signal: AbortSignal;
  timedOut: () => boolean;
  clear: () => void;
  /** Start the timer again (a stream that received bytes is alive). */
  extend: (ms: number) => void;
}

function deadline(timeoutMs: number, outer: AbortSignal | undefined): Deadline {
  const controller = new AbortController();
  let timedOut = false;
  let timer: NodeJS.Timeout | undefined;
  const arm = (ms: number): void => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      timedOut = true;
      controller.abort(new APITimeoutError(`no answer within ${ms} ms`));
    }, ms);
  };
  const onAbort = (): void => controller.abort(outer?.reason);
  if (outer?.aborted) controller.abort(outer.reason);
  else outer?.addEventListener("abort", onAbort, { once: true });
  arm(timeoutMs);
  return {
    signal: controller.signal,
    timedOut: () => timedOut,
    clear: () => {
      clearTimeout(timer);
      outer?.removeEventListener("abort", onAbort);
    },
    extend: arm,
  };
}

/** An open streamed answer: the response and the deadline guarding its reads. */
export interface OpenStream {
  response: Response;
  /** Restart the idle timer (call on every chunk). */
  alive: (ms: number) => void;
  /** Stop the timer and release the outer signal. */
  close: () => void;
  /** Whether the idle timer fired. */
  timedOut: () => boolean;
}

/** Sends {@link Call}s with the client's credentials, retries and error mapping. */
export class Transport {
  readonly settings: TransportSettings;

  constructor(settings: TransportSettings) {
    this.settings = settings;
  }

  /** The URL of `path` under the base URL, with the query string. */
  url(path: string, query?: Query): string {
    const url = new URL(this.settings.baseUrl + path);
    for (const [key, value] of Object.entries(query ?? {})) {
      if (value !== undefined) url.searchParams.set(key, String(value));
    }
    return url.toString();
  }

  private init(call: Call<unknown>, signal: AbortSignal): RequestInit {
    const headers: Record<string, string> = { Accept: "application/json", "User-Agent": USER_AGENT };
    if (this.settings.apiKey) headers["Authorization"] = `Bearer ${this.settings.apiKey}`;
    let body: string | undefined;
    if (call.json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(call.json);
    }
    Object.assign(headers, call.headers);
    return { method: call.method, headers, body, signal, redirect: "follow" };
  }

  /** Send `call` and return its parsed answer. */
  async send<T>(call: Call<T>, options: RequestOptions = {}): Promise<T> {
    return (await this.attempts(call, options, false)) as T;
  }

  /**
   * Open `call` as a stream: retried like {@link send} until a 2xx arrives, whose body is left
   * unread. Its idle timer starts at `idleMs`; the caller restarts it with `alive`.
   */
  async open(call: Call<unknown>, options: RequestOptions, idleMs: number): Promise<OpenStream> {
    return (await this.attempts(call, { ...options, timeoutMs: options.timeoutMs ?? idleMs }, true)) as OpenStream;
  }

  private async attempts(call: Call<unknown>, options: RequestOptions, stream: boolean): Promise<unknown> {
    const { maxRetries, fetch, random } = this.settings;
    const idempotent = call.idempotent ?? true;
    const url = this.url(call.path, call.query);
    const timeoutMs = options.timeoutMs ?? call.timeoutMs ?? this.settings.timeoutMs;
    for (let attempt = 0; ; attempt++) {
      const retriesLeft = maxRetries - attempt;
      const guard = deadline(timeoutMs, options.signal);
      let response: Response;
      try {
        response = await fetch(url, this.init(call, guard.signal));
      } catch (error) {
        guard.clear();
        const failure = this.networkFailure(error, guard, options.signal, call);
        if (retriesLeft <= 0 || !networkErrorIsRetryable(error, idempotent) || options.signal?.aborted) throw failure;
        await this.settings.sleep(backoffMs(attempt, random), options.signal);
        continue;
      }
      if (response.ok && stream) {
        return {
          response,
          alive: guard.extend,
          close: guard.clear,
          timedOut: guard.timedOut,
        } satisfies OpenStream;
      }
      let body: Uint8Array;
      try {
        body = new Uint8Array(await response.arrayBuffer());
      } catch (error) {
        guard.clear();
        const failure = this.networkFailure(error, guard, options.signal, call);
        if (retriesLeft <= 0 || !idempotent || options.signal?.aborted) throw failure;
        await this.settings.sleep(backoffMs(attempt, random), options.signal);
        continue;
      }
      guard.clear();
      const answer = answerOf(response.status, response.headers, body);
      if (response.ok) return call.parse(answer);
      const delay = retryDelayMs(
        { status: answer.status, headers: answer.headers, bodyText: answer.text(), attempt, retriesLeft, idempotent },
        random,
      );
      if (delay === undefined) throw errorFromResponse(answer.status, answer.headers, answer.text());
      await this.settings.sleep(delay, options.signal);
    }
  }

  private networkFailure(
    error: unknown,
    guard: Deadline,
    outer: AbortSignal | undefined,
    call: Call<unknown>,
  ): unknown {
    if (outer?.aborted) return outer.reason; // the caller's own abort: theirs to recognise
    const what = `${call.method} ${call.path}`;
    if (guard.timedOut()) return new APITimeoutError(`${what}: no answer in time`);
    if (error instanceof RLMError) return error;
    const code = networkErrorCode(error);
    return new APIConnectionError(`${what}: ${code ?? (error as Error)?.message ?? "the request failed"}`, {
      cause: error,
      details: code === undefined ? {} : { code },
    });
  }
}
