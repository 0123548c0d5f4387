/**
 * `@rlm-hypervisor/sdk`: the TypeScript client of the RLM Hypervisor API.
 *
 * @example
 * ```ts
 * import { RLMClient } from '@rlm-hypervisor/sdk';
 *
 * const client = new RLMClient({ apiKey: 'your-api-key' });
 * const result = await client.execute({
 *   type: 'recursive',
 *   description: 'Process items recursively',
 *   input: { items: [1, 2, 3, 4, 5], operation: 'sum' }
 * });
 * const quotas = await client.quotas.getStatus();
 * console.log(`Remaining: ${quotas.daily.agentsRemaining}`);
 * ```
 *
 * @packageDocumentation
 */

export {
  DEFAULT_BASE_URL,
  RLMClient,
  type ExecuteCallOptions,
  type RLMClientOptions,
} from "./client.js";
export {
  APIConnectionError,
  APITimeoutError,
  Conflict,
  Forbidden,
  InternalError,
  InvalidInput,
  QuotaExceeded,
  RateLimited,
  RLMError,
  TaskNotFound,
  TaskTimeout,
  Unauthorized,
  EvaluationNotFound,
  WebhookNotFound,
  WebhookVerificationError,
  errorFromResponse,
  type Details,
  type RLMErrorInit,
} from "./errors.js";
export { LineSplitter, SSEDecoder, type EventStreamOptions, type ServerSentEvent } from "./events.js";
export type { Fetch, RequestOptions } from "./http.js";
export type { EvaluationsAPI } from "./resources/evaluations.js";
export type { IdempotentOptions, QuotasAPI, TransferParams, UsageParams } from "./resources/quotas.js";
export type { SecurityAPI, SecurityEventsParams } from "./resources/security.js";
export type { StorageAPI, StorageReadParams } from "./resources/storage.js";
export { TERMINAL_STATES, type TaskListParams, type TaskPageParams, type TasksAPI, type WaitOptions } from "./resources/tasks.js";
export type { WebhooksAPI } from "./resources/webhooks.js";
export { backoffMs, parseRetryAfterMs, retryDelayMs, MAX_RETRY_WAIT_MS } from "./retry.js";
export type * from "./types.js";
export { VERSION } from "./version.js";
export {
  WEBHOOK_TOLERANCE_S,
  signWebhook,
  verifyWebhook,
  type VerifyOptions,
  type WebhookEvent,
  type WebhookHeaders,
} from "./webhook-signature.js";
