/**
 * When a failed call is worth repeating, and after how long (pure policy, no I/O).
 *
 * The same policy as the Python SDK's (`rlm_hypervisor/_retry.py`), per failed attempt:
 *
 * - `429` (`RATE_LIMITED` / `QUOTA_EXCEEDED`) is retried for every call, `POST /execute`
 *   included: a 429 is refused at admission and consumed nothing. The wait is `Retry-After`
 *   (else the body's `details.retryAfterS`, else the backoff), capped at {@link MAX_RETRY_WAIT_MS}
 *   per sleep. When the server names a wait longer than the remaining retries could sleep in all
 *   (a daily quota that resets in hours), the error is thrown at once instead.
 * - `500`/`502`/`503`/`504` are retried for idempotent calls only (`POST /execute` is one: the
 *   SDK sends it with an `Idempotency-Key`, the same on every repeat, so a repeat answers the
 *   task the first attempt created). A 500 carrying `details.result` is a task that ran and
 *   failed: that is its answer, not retried.
 * - A failure to connect (nothing was sent) is retried for every call; a timeout or a dropped
 *   connection (the server may have acted) for idempotent calls only.
 *
 * Every wait has jitter, so clients refused together do not come back together: the backoff is
 * drawn from its upper half, and a server-named wait is lengthened by up to 10 % (never
 * shortened: the server said when).
 *
 * @module
 */

/** The longest single sleep before a retry. */
export const MAX_RETRY_WAIT_MS = 30_000;
/** The first backoff; it doubles per attempt up to {@link BACKOFF_MAX_MS}. */
export const BACKOFF_BASE_MS = 500;
/** The longest backoff. */
export const BACKOFF_MAX_MS = 8_000;
/** Statuses that mean "try again" for an idempotent call. */
export const RETRYABLE_STATUSES: ReadonlySet<number> = new Set([500, 502, 503, 504]);

/** A source of uniform numbers in [0, 1) (`Math.random`, or a fixed one in tests). */
export type Random = () => number;

/**
 * The backoff before retry number `attempt + 1` (`attempt` from 0), with jitter: a uniform
 * draw from the upper half of the exponential step.
 */
export function backoffMs(attempt: number, random: Random = Math.random): number {
  const step = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.max(0, attempt));
  return step / 2 + (step / 2) * random();
}

/**
 * Milliseconds to wait from a `Retry-After` header (delta-seconds or an HTTP date).
 *
 * @returns A finite, non-negative number, or `undefined` when absent or unparseable.
 */
export function parseRetryAfterMs(
  value: string | null | undefined,
  nowMs: number = Date.now(),
): number | undefined {
  if (value === null || value === undefined) return undefined;
  const text = value.trim();
  if (text === "") return undefined;
  let ms: number;
  if (/^[+-]?\d+(\.\d+)?$/.test(text)) {
    ms = Number(text) * 1000;
  } else {
    const when = Date.parse(text);
    if (Number.isNaN(when)) return undefined;
    ms = when - nowMs;
  }
  return Number.isFinite(ms) ? Math.max(0, ms) : undefined;
}

function errorDetails(bodyText: string): Record<string, unknown> | undefined {
  try {
    const body: unknown = JSON.parse(bodyText);
    const error = (body as { error?: { details?: unknown } } | null)?.error;
    const details = error?.details;
    return typeof details === "object" && details !== null ? (details as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** What {@link retryDelayMs} looks at. */
export interface FailedAttempt {
  /** The answer's HTTP status. */
  status: number;
  /** The answer's headers. */
  headers: Headers;
  /** The answer's body. */
  bodyText: string;
  /** Retries already made for this call (0 after the first try). */
  attempt: number;
  /** How many more retries the client allows. */
  retriesLeft: number;
  /** Whether repeating the call cannot do anything twice. */
  idempotent: boolean;
}

/**
 * How long to wait before repeating a call that got an error answer.
 *
 * @returns Milliseconds to sleep, or `undefined` when the error should be thrown now.
 */
export function retryDelayMs(failed: FailedAttempt, random: Random = Math.random, nowMs?: number): number | undefined {
  if (failed.retriesLeft <= 0) return undefined;
  let wait: number | undefined;
  if (failed.status === 429) {
    wait = parseRetryAfterMs(failed.headers.get("retry-after"), nowMs);
    if (wait === undefined) {
      const fromBody = errorDetails(failed.bodyText)?.["retryAfterS"];
      if (typeof fromBody === "number" && Number.isFinite(fromBody) && fromBody >= 0) wait = fromBody * 1000;
    }
  } else if (RETRYABLE_STATUSES.has(failed.status) && failed.idempotent) {
    if (errorDetails(failed.bodyText)?.["result"] !== undefined) return undefined; // a task's outcome
    wait = parseRetryAfterMs(failed.headers.get("retry-after"), nowMs);
  } else {
    return undefined;
  }
  if (wait === undefined) return backoffMs(failed.attempt, random);
  if (wait > MAX_RETRY_WAIT_MS * failed.retriesLeft) return undefined; // capped sleeps cannot get there
  return Math.min(wait * (1 + 0.1 * random()), MAX_RETRY_WAIT_MS);
}

// Codes of failures before any byte of the request left this process (undici and libuv).
const NOTHING_SENT = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "UND_ERR_CONNECT_TIMEOUT",
]);

/** The error code of a fetch failure (`TypeError: fetch failed` wraps it in `cause`). */
export function networkErrorCode(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 4 && typeof current === "object" && current !== null; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === "string") return code;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

/** Whether a call whose request failed with `error` (no answer) may be repeated. */
export function networkErrorIsRetryable(error: unknown, idempotent: boolean): boolean {
  if (idempotent) return true;
  const code = networkErrorCode(error);
  return code !== undefined && NOTHING_SENT.has(code);
}
