/**
 * The SDK's errors: the API's error envelope, typed.
 *
 * Every error answer of the API is `{"error": {"code", "message", "details"?}, "requestId"}`.
 * It becomes the class registered for its `code`, carrying `code`, `status` (the HTTP status as
 * received), `requestId` (quote it to support) and `details`:
 *
 * ```
 * RLMError                      code               status
 * ├── InvalidInput              INVALID_INPUT      400
 * │   └── Conflict              CONFLICT           409   (the current state refuses it)
 * ├── Unauthorized              UNAUTHORIZED       401
 * ├── Forbidden                 FORBIDDEN          403
 * ├── TaskNotFound              TASK_NOT_FOUND     404
 * ├── WebhookNotFound           WEBHOOK_NOT_FOUND  404
 * ├── EvaluationNotFound        EVALUATION_NOT_FOUND 404 (runId)
 * ├── TaskTimeout               TIMEOUT            408
 * ├── QuotaExceeded             QUOTA_EXCEEDED     429   (resource, limit, used, resetTime)
 * ├── RateLimited               RATE_LIMITED       429   (retryAfterS)
 * ├── InternalError             INTERNAL_ERROR     500   (also: an answer without the envelope)
 * ├── APIConnectionError        (none)             -     the network failed; no answer
 * │   └── APITimeoutError                                no answer within timeoutMs
 * └── WebhookVerificationError  (none)             -     a webhook delivery did not verify
 * ```
 *
 * An unknown `code` (a newer server) gives the base `RLMError` with that code.
 *
 * @module
 */

/** A JSON object (the `details` of an error). */
export type Details = Record<string, unknown>;

/** What every error of the SDK carries. */
export interface RLMErrorInit {
  /** The API's error code (`QUOTA_EXCEEDED`...). */
  code?: string;
  /** The HTTP status received (0 when no answer came). */
  status?: number;
  /** The request's id, from the envelope or the `X-Request-ID` header. */
  requestId?: string | undefined;
  /** Structured facts from the envelope's `details`. */
  details?: Details;
  /** The headers of the answer. */
  headers?: Headers | undefined;
  /** The underlying error (a network failure). */
  cause?: unknown;
}

/** The base of every error the SDK throws. */
export class RLMError extends Error {
  /** The code this class stands for (the API document's error codes). */
  static readonly code: string = "INTERNAL_ERROR";
  /** The HTTP status that goes with the code. */
  static readonly status: number = 500;

  /** The API's error code (`QUOTA_EXCEEDED`, `TASK_NOT_FOUND`...). */
  readonly code: string;
  /** The HTTP status of the answer (0 when no answer came). */
  readonly status: number;
  /** The request's id: quote it when asking for support. */
  readonly requestId: string | undefined;
  /** Structured facts (`details` of the envelope); `{}` when none. */
  readonly details: Details;
  /** The answer's headers, when there was an answer. */
  readonly headers: Headers | undefined;

  constructor(message: string, init: RLMErrorInit = {}) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause });
    const cls = new.target as unknown as typeof RLMError;
    this.name = new.target.name;
    this.code = init.code ?? cls.code;
    this.status = init.status ?? cls.status;
    this.requestId = init.requestId;
    this.details = init.details ?? {};
    this.headers = init.headers;
  }
}

/** The request, an option or the input is not valid (400 `INVALID_INPUT`). */
export class InvalidInput extends RLMError {
  static override readonly code: string = "INVALID_INPUT";
  static override readonly status: number = 400;
}

/** A well-formed change the current state refuses (409 `CONFLICT`, an extension). */
export class Conflict extends InvalidInput {
  static override readonly code: string = "CONFLICT";
  static override readonly status: number = 409;
}

/** No valid token (401 `UNAUTHORIZED`). */
export class Unauthorized extends RLMError {
  static override readonly code: string = "UNAUTHORIZED";
  static override readonly status: number = 401;
}

/** The token lacks the scope or the tenancy (403 `FORBIDDEN`). */
export class Forbidden extends RLMError {
  static override readonly code: string = "FORBIDDEN";
  static override readonly status: number = 403;
}

/** No such task for this caller (404 `TASK_NOT_FOUND`). */
export class TaskNotFound extends RLMError {
  static override readonly code: string = "TASK_NOT_FOUND";
  static override readonly status: number = 404;
}

/** No such webhook or delivery for this caller (404 `WEBHOOK_NOT_FOUND`). */
export class WebhookNotFound extends RLMError {
  static override readonly code: string = "WEBHOOK_NOT_FOUND";
  static override readonly status: number = 404;
}

/** No such evaluation run for this caller (404 `EVALUATION_NOT_FOUND`). */
export class EvaluationNotFound extends RLMError {
  static override readonly code: string = "EVALUATION_NOT_FOUND";
  static override readonly status: number = 404;
}

/** The task ran past its `timeoutMs` (408 `TIMEOUT`). */
export class TaskTimeout extends RLMError {
  static override readonly code: string = "TIMEOUT";
  static override readonly status: number = 408;
}

/** A daily, weekly or monthly quota would be exceeded (429 `QUOTA_EXCEEDED`). */
export class QuotaExceeded extends RLMError {
  static override readonly code: string = "QUOTA_EXCEEDED";
  static override readonly status: number = 429;
}

/** Too many requests for the caller's tier (429 `RATE_LIMITED`). */
export class RateLimited extends RLMError {
  static override readonly code: string = "RATE_LIMITED";
  static override readonly status: number = 429;

  /** Seconds until a retry can succeed (`details.retryAfterS`, else `Retry-After`). */
  get retryAfterS(): number | undefined {
    const fromBody = this.details["retryAfterS"];
    if (typeof fromBody === "number") return fromBody;
    const header = this.headers?.get("retry-after");
    const seconds = header === null || header === undefined ? NaN : Number(header);
    return Number.isFinite(seconds) ? seconds : undefined;
  }
}

/** Something failed inside the service, or the answer was not the API's (500). */
export class InternalError extends RLMError {
  static override readonly code: string = "INTERNAL_ERROR";
  static override readonly status: number = 500;
}

/** The network failed (DNS, refused connection, reset): no answer came. */
export class APIConnectionError extends RLMError {
  static override readonly code: string = "CONNECTION_ERROR";
  static override readonly status: number = 0;
}

/** No answer came within the client's `timeoutMs`. */
export class APITimeoutError extends APIConnectionError {
  static override readonly code: string = "CONNECTION_TIMEOUT";
}

/** A webhook delivery failed verification (missing header, stale timestamp, bad signature). */
export class WebhookVerificationError extends RLMError {
  static override readonly code: string = "WEBHOOK_VERIFICATION_FAILED";
  static override readonly status: number = 400;
}

type ErrorClass = new (message: string, init?: RLMErrorInit) => RLMError;

const BY_CODE: ReadonlyMap<string, ErrorClass> = new Map<string, ErrorClass>(
  [
    InvalidInput,
    Conflict,
    Unauthorized,
    Forbidden,
    TaskNotFound,
    WebhookNotFound,
    EvaluationNotFound,
    TaskTimeout,
    QuotaExceeded,
    RateLimited,
    InternalError,
  ].map((cls) => [cls.code, cls]),
);

// Enough of a foreign body (a proxy's HTML page) to diagnose, not to flood logs.
const BODY_EXCERPT_CHARS = 1000;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * The error an error answer stands for.
 *
 * @param status - The HTTP status.
 * @param headers - The answer's headers.
 * @param text - The answer's body, as text.
 * @returns The class registered for the envelope's `code`; a body without the envelope gives
 *   an `InternalError` whose `details` hold `status` and a `body` excerpt.
 */
export function errorFromResponse(status: number, headers: Headers, text: string): RLMError {
  let requestId = headers.get("x-request-id") ?? undefined;
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  const error = isObject(body) ? body["error"] : undefined;
  if (isObject(body) && isObject(error) && typeof error["code"] === "string") {
    if (typeof body["requestId"] === "string") requestId = body["requestId"];
    const code = error["code"];
    const raw = error["details"];
    const details: Details = raw === undefined || raw === null ? {} : isObject(raw) ? raw : { details: raw };
    const cls = BY_CODE.get(code) ?? RLMError;
    return new cls(String(error["message"] ?? ""), { code, status, requestId, details, headers });
  }
  return new InternalError(`HTTP ${status} without the API's error envelope`, {
    status,
    requestId,
    headers,
    details: { status, body: text.slice(0, BODY_EXCERPT_CHARS) },
  });
}

/**
 * An `InternalError` for a successful answer that is not the promised shape (a server and SDK
 * of different versions, or a proxy's page).
 */
export function unexpectedResponse(
  status: number,
  headers: Headers,
  text: string,
  what: string,
): InternalError {
  return new InternalError(`the server's answer is not a valid ${what}`, {
    status,
    requestId: headers.get("x-request-id") ?? undefined,
    headers,
    details: { status, body: text.slice(0, BODY_EXCERPT_CHARS) },
  });
}
