/**
 * `client.webhooks`: register endpoints, rotate secrets, read and retry deliveries, and verify
 * what arrives ({@link WebhooksAPI.verify}).
 *
 * @module
 */

import type { RequestOptions, Transport } from "../http.js";
import type { Delivery, SecretRotated, Webhook, WebhookCreate, WebhookCreated, WebhookUpdate } from "../types.js";
import {
  type VerifyOptions,
  type WebhookEvent,
  type WebhookHeaders,
  verifyWebhook,
} from "../webhook-signature.js";
import { listOf, nothing, object, seg } from "./shared.js";

/** `client.webhooks`. */
export class WebhooksAPI {
  readonly #http: Transport;

  constructor(http: Transport) {
    this.#http = http;
  }

  /**
   * Register an endpoint: `POST /webhooks` (**201**). Keep the answer's `secret`: it is shown
   * only this once. Not repeated after a lost answer (a repeat would register a second one).
   */
  create(webhook: WebhookCreate, options?: RequestOptions): Promise<WebhookCreated> {
    return this.#http.send(
      { method: "POST", path: "/webhooks", json: webhook, idempotent: false, parse: object<WebhookCreated>("WebhookCreated") },
      options,
    );
  }

  /** Your webhooks (an `rlm:admin`'s org's too): `GET /webhooks`. */
  list(options?: RequestOptions): Promise<Webhook[]> {
    return this.#http.send({ method: "GET", path: "/webhooks", parse: listOf<Webhook>("webhooks", "webhook list") }, options);
  }

  /** One webhook; another tenant's is 404 `WEBHOOK_NOT_FOUND`. */
  get(webhookId: string, options?: RequestOptions): Promise<Webhook> {
    return this.#http.send({ method: "GET", path: `/webhooks/${seg(webhookId)}`, parse: object<Webhook>("Webhook") }, options);
  }

  /** Change the fields given (`enabled: true` re-enables a disabled one). */
  update(webhookId: string, changes: WebhookUpdate, options?: RequestOptions): Promise<Webhook> {
    return this.#http.send(
      { method: "PATCH", path: `/webhooks/${seg(webhookId)}`, json: changes, parse: object<Webhook>("Webhook") },
      options,
    );
  }

  /** Remove a webhook and its deliveries (204; not repeated: a repeat would answer 404). */
  delete(webhookId: string, options?: RequestOptions): Promise<undefined> {
    return this.#http.send(
      { method: "DELETE", path: `/webhooks/${seg(webhookId)}`, idempotent: false, parse: nothing },
      options,
    );
  }

  /** A new secret signs from now on; the old one too for `graceSeconds` (default: a day). */
  rotateSecret(webhookId: string, graceSeconds?: number, options?: RequestOptions): Promise<SecretRotated> {
    return this.#http.send(
      {
        method: "POST",
        path: `/webhooks/${seg(webhookId)}/rotate-secret`,
        json: graceSeconds === undefined ? {} : { graceSeconds },
        idempotent: false,
        parse: object<SecretRotated>("SecretRotated"),
      },
      options,
    );
  }

  /** Send a `webhook.test` ping; answers once its first attempt has ended. */
  test(webhookId: string, options?: RequestOptions): Promise<Delivery> {
    return this.#http.send(
      { method: "POST", path: `/webhooks/${seg(webhookId)}/test`, idempotent: false, parse: object<Delivery>("Delivery") },
      options,
    );
  }

  /** The webhook's deliveries, newest first, each with its attempts. */
  deliveries(
    webhookId: string,
    params: { status?: string; limit?: number } = {},
    options?: RequestOptions,
  ): Promise<Delivery[]> {
    return this.#http.send(
      {
        method: "GET",
        path: `/webhooks/${seg(webhookId)}/deliveries`,
        query: { status: params.status, limit: params.limit },
        parse: listOf<Delivery>("deliveries", "delivery list"),
      },
      options,
    );
  }

  /** One delivery and its attempts. */
  delivery(webhookId: string, deliveryId: string, options?: RequestOptions): Promise<Delivery> {
    return this.#http.send(
      { method: "GET", path: `/webhooks/${seg(webhookId)}/deliveries/${seg(deliveryId)}`, parse: object<Delivery>("Delivery") },
      options,
    );
  }

  /** Send a delivery again now (**202**), under the same `webhook-id`. */
  retry(webhookId: string, deliveryId: string, options?: RequestOptions): Promise<Delivery> {
    return this.#http.send(
      {
        method: "POST",
        path: `/webhooks/${seg(webhookId)}/deliveries/${seg(deliveryId)}/retry`,
        parse: object<Delivery>("Delivery"),
      },
      options,
    );
  }

  /**
   * Check a delivery that reached your endpoint and return its event (see
   * {@link verifyWebhook}): the raw body, its headers, and your secret (or the old and new one
   * during a rotation).
   */
  verify(
    payload: string | Uint8Array,
    headers: WebhookHeaders,
    secret: string | readonly string[],
    options?: VerifyOptions,
  ): WebhookEvent {
    return verifyWebhook(payload, headers, secret, options);
  }
}
