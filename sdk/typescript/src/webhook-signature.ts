/**
 * Receiving webhooks: check that a delivery comes from the service, untouched.
 *
 * Every delivery is signed per the Standard Webhooks specification, as the service signs it
 * (`rlm/webhooks/signing.py`, with the `standardwebhooks` library): headers `webhook-id`,
 * `webhook-timestamp` (epoch seconds) and `webhook-signature`, a space-separated list of
 * `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, one per secret that signs (during a
 * rotation's grace period, the new and the old one). The secret is `whsec_` + base64 of the key.
 *
 * Verify the raw body exactly as it arrived (not a re-serialised copy), and deduplicate on
 * `webhook-id`: a delivery may arrive more than once, always under the same id.
 *
 * @module
 */

import { createHmac, timingSafeEqual } from "node:crypto";

import { WebhookVerificationError } from "./errors.js";

/** How far a delivery's timestamp may be from now (the specification's five minutes). */
export const WEBHOOK_TOLERANCE_S = 5 * 60;

const SECRET_PREFIX = "whsec_";

/** A delivery's event: `task.completed`, `quota.threshold_exceeded` or `webhook.test`. */
export interface WebhookEvent {
  event: string;
  timestamp: string;
  data: Record<string, unknown>;
}

/** Request headers in any of the shapes servers give them (names in any case). */
export type WebhookHeaders =
  | Headers
  | Record<string, string | string[] | undefined>
  | Iterable<[string, string]>;

/** Options of {@link verifyWebhook}. */
export interface VerifyOptions {
  /** Seconds of clock difference allowed (default {@link WEBHOOK_TOLERANCE_S}). */
  toleranceS?: number;
  /** The current time in epoch seconds (default: the clock). */
  nowS?: number;
}

function secretKey(secret: string): Buffer {
  const encoded = secret.startsWith(SECRET_PREFIX) ? secret.slice(SECRET_PREFIX.length) : secret;
  const key = Buffer.from(encoded, "base64");
  if (key.length === 0) throw new WebhookVerificationError("the webhook secret is empty");
  return key;
}

function header(headers: WebhookHeaders, name: string): string | undefined {
  if (headers instanceof Headers) return headers.get(name) ?? undefined;
  const entries: Iterable<[string, string | string[] | undefined]> =
    Symbol.iterator in headers
      ? (headers as Iterable<[string, string]>)
      : Object.entries(headers as Record<string, string | string[] | undefined>);
  for (const [key, value] of entries) {
    if (key.toLowerCase() === name) return Array.isArray(value) ? value.join(" ") : value;
  }
  return undefined;
}

function bodyBytes(payload: string | Uint8Array): Buffer {
  if (typeof payload === "string") return Buffer.from(payload, "utf8");
  if (payload instanceof Uint8Array) return Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  throw new TypeError("the webhook payload must be the raw body: a string or bytes");
}

/**
 * The `webhook-signature` value for one secret: `v1,<base64 HMAC-SHA256>` of
 * `"<id>.<timestamp>.<body>"` (what the service sends; for testing your receiver).
 */
export function signWebhook(secret: string, id: string, timestampS: number, payload: string | Uint8Array): string {
  const mac = createHmac("sha256", secretKey(secret));
  mac.update(`${id}.${Math.floor(timestampS)}.`);
  mac.update(bodyBytes(payload));
  return `v1,${mac.digest("base64")}`;
}

/**
 * Check a delivery's signature and timestamp, and return its event.
 *
 * @param payload - The request body exactly as received (string or bytes).
 * @param headers - The request headers (a `Headers`, Node's `req.headers`, or entries).
 * @param secret - The webhook's `whsec_...` secret, or several (during a rotation either one
 *   verifies: the service signs with both).
 * @throws {@link WebhookVerificationError} a header is missing, the timestamp is more than
 *   five minutes off, no signature matches (the body was changed, or the secret is another),
 *   or the body is not a JSON object.
 *
 * @example
 * ```ts
 * const event = verifyWebhook(rawBody, req.headers, process.env.WEBHOOK_SECRET!);
 * if (event.event === "task.completed") console.log(event.data.taskId);
 * ```
 */
export function verifyWebhook(
  payload: string | Uint8Array,
  headers: WebhookHeaders,
  secret: string | readonly string[],
  options: VerifyOptions = {},
): WebhookEvent {
  const secrets = typeof secret === "string" ? [secret] : [...secret];
  if (secrets.length === 0) throw new WebhookVerificationError("no secret to verify with");
  const id = header(headers, "webhook-id");
  const timestamp = header(headers, "webhook-timestamp");
  const signatures = header(headers, "webhook-signature");
  if (!id || !timestamp || !signatures) throw new WebhookVerificationError("Missing required headers");
  if (!/^\d+$/.test(timestamp)) throw new WebhookVerificationError("Invalid Signature Headers");
  const sentS = Number(timestamp);
  const nowS = options.nowS ?? Math.floor(Date.now() / 1000);
  const tolerance = options.toleranceS ?? WEBHOOK_TOLERANCE_S;
  if (sentS < nowS - tolerance) throw new WebhookVerificationError("Message timestamp too old");
  if (sentS > nowS + tolerance) throw new WebhookVerificationError("Message timestamp too new");
  const body = bodyBytes(payload);
  const offered = signatures.split(" ").map((s) => Buffer.from(s, "utf8"));
  const matches = secrets.some((candidate) => {
    const expected = Buffer.from(signWebhook(candidate, id, sentS, body), "utf8");
    // Compare every offered signature in constant time (lengths differ only between versions).
    return offered.some((sig) => sig.length === expected.length && timingSafeEqual(sig, expected));
  });
  if (!matches) throw new WebhookVerificationError("No matching signature found");
  let event: unknown;
  try {
    event = JSON.parse(body.toString("utf8"));
  } catch {
    throw new WebhookVerificationError("the payload is not JSON");
  }
  if (typeof event !== "object" || event === null || Array.isArray(event)) {
    throw new WebhookVerificationError("the payload is not a JSON object");
  }
  return event as WebhookEvent;
}
