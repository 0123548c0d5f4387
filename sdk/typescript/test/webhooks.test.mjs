// client.webhooks against the live service's delivery worker, and verify() on what arrives:
// signatures made by the service (Python, standardwebhooks) checked with node:crypto.
import assert from "node:assert/strict";
import http from "node:http";
import { after, before, describe, test } from "node:test";

import { WebhookNotFound, WebhookVerificationError, signWebhook, verifyWebhook } from "../dist/index.js";
import { TAG, client, task } from "./live.mjs";

/** A receiver on loopback: every delivery's raw body and headers, awaited by predicate. */
async function receiver() {
  const received = [];
  const waiters = [];
  const server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    received.push({ headers: req.headers, body: Buffer.concat(chunks) });
    res.writeHead(204).end();
    for (const w of [...waiters]) w();
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const next = (predicate, timeoutMs = 20_000) =>
    new Promise((resolve, reject) => {
      const check = () => {
        const hit = received.find(predicate);
        if (hit === undefined) return;
        waiters.splice(waiters.indexOf(check), 1);
        clearTimeout(timer);
        resolve(hit);
      };
      const timer = setTimeout(() => {
        waiters.splice(waiters.indexOf(check), 1);
        reject(new Error(`no matching delivery within ${timeoutMs} ms; got ${received.length}`));
      }, timeoutMs);
      waiters.push(check);
      check();
    });
  return {
    url: `http://127.0.0.1:${server.address().port}/hooks/rlm`,
    received,
    next,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

const ofEvent = (event) => (d) => JSON.parse(d.body.toString("utf8")).event === event;

describe("webhooks", () => {
  const user = client("user");
  let hooks;
  let created;

  before(async () => {
    hooks = await receiver();
    created = await user.webhooks.create({ url: hooks.url, events: ["task.completed"], description: `ts ${TAG}` });
  });
  after(async () => hooks.close());

  test("create answers the secret once; list and get show the webhook without it", async () => {
    assert.match(created.secret, /^whsec_/);
    assert.equal(created.url, hooks.url);
    assert.equal(created.status, "active");
    const listed = await user.webhooks.list();
    assert.ok(listed.some((w) => w.webhookId === created.webhookId));
    const got = await user.webhooks.get(created.webhookId);
    assert.equal(got.description, `ts ${TAG}`);
    assert.equal(got.secret, undefined);
    await assert.rejects(client("other").webhooks.get(created.webhookId), (err) => {
      assert.ok(err instanceof WebhookNotFound);
      assert.equal(err.status, 404);
      return true;
    });
  });

  test("a task's completion arrives signed; verify accepts it and refuses any change", async () => {
    const result = await user.execute(task([1, 2, 3, 4, 5]));
    const delivery = await hooks.next((d) => ofEvent("task.completed")(d) && d.body.includes(result.taskId));
    const event = user.webhooks.verify(delivery.body, delivery.headers, created.secret);
    assert.equal(event.event, "task.completed");
    assert.equal(event.data.taskId, result.taskId);
    assert.equal(event.data.result.output, 15);
    // The body as a string verifies the same; a changed byte, another secret or a stale
    // timestamp do not.
    assert.equal(verifyWebhook(delivery.body.toString("utf8"), delivery.headers, created.secret).data.taskId, result.taskId);
    const tampered = Buffer.from(delivery.body);
    tampered[tampered.length - 2] ^= 1;
    assert.throws(() => verifyWebhook(tampered, delivery.headers, created.secret), WebhookVerificationError);
    const otherSecret = `whsec_${Buffer.alloc(32, 7).toString("base64")}`;
    assert.throws(() => verifyWebhook(delivery.body, delivery.headers, otherSecret), /No matching signature/);
    const sentAt = Number(delivery.headers["webhook-timestamp"]);
    assert.throws(() => verifyWebhook(delivery.body, delivery.headers, created.secret, { nowS: sentAt + 301 }), /too old/);
    assert.throws(() => verifyWebhook(delivery.body, delivery.headers, created.secret, { nowS: sentAt - 301 }), /too new/);
    const { "webhook-signature": _, ...unsigned } = delivery.headers;
    assert.throws(() => verifyWebhook(delivery.body, unsigned, created.secret), /Missing required headers/);
  });

  test("test pings; a rotated secret and the old one both verify during the grace period", async () => {
    const rotated = await user.webhooks.rotateSecret(created.webhookId, 3600);
    assert.match(rotated.secret, /^whsec_/);
    assert.notEqual(rotated.secret, created.secret);
    assert.ok(rotated.previousSecretExpiresAt);
    const ping = await user.webhooks.test(created.webhookId);
    assert.equal(ping.event, "webhook.test");
    assert.equal(ping.status, "succeeded");
    const delivery = await hooks.next((d) => d.headers["webhook-id"] === ping.eventId);
    assert.equal(delivery.headers["webhook-signature"].split(" ").length, 2);
    for (const secret of [rotated.secret, created.secret, [otherSecretOf(rotated.secret), rotated.secret]]) {
      assert.equal(verifyWebhook(delivery.body, new Headers(delivery.headers), secret).event, "webhook.test");
    }
  });

  test("deliveries are listed with their attempts, and a retry resends the same webhook-id", async () => {
    const deliveries = await user.webhooks.deliveries(created.webhookId, { limit: 10 });
    assert.ok(deliveries.length >= 2);
    const ping = deliveries.find((d) => d.event === "webhook.test");
    const one = await user.webhooks.delivery(created.webhookId, ping.deliveryId);
    assert.equal(one.attemptLog[0].statusCode, 204);
    const before = hooks.received.filter((d) => d.headers["webhook-id"] === ping.eventId).length;
    const queued = await user.webhooks.retry(created.webhookId, ping.deliveryId);
    assert.equal(queued.deliveryId, ping.deliveryId);
    await hooks.next(
      (d) => d.headers["webhook-id"] === ping.eventId && hooks.received.filter((x) => x.headers["webhook-id"] === ping.eventId).length > before,
    );
    const succeeded = await user.webhooks.deliveries(created.webhookId, { status: "succeeded" });
    assert.ok(succeeded.every((d) => d.status === "succeeded"));
  });

  test("update and delete", async () => {
    const disabled = await user.webhooks.update(created.webhookId, { enabled: false, description: null });
    assert.equal(disabled.status, "disabled");
    assert.equal(disabled.description ?? null, null);
    assert.equal(await user.webhooks.delete(created.webhookId), undefined);
    await assert.rejects(user.webhooks.get(created.webhookId), WebhookNotFound);
  });
});

function otherSecretOf(secret) {
  return `whsec_${Buffer.from(secret.slice(6), "base64").reverse().toString("base64")}`;
}

test("a delivery signed by the service's Python signer verifies, byte for byte", () => {
  const vector = JSON.parse(process.env.RLM_TEST_WEBHOOK_VECTOR ?? "null");
  assert.ok(vector, "RLM_TEST_WEBHOOK_VECTOR is not set");
  const event = verifyWebhook(vector.body, vector.headers, vector.secret);
  assert.deepEqual(event, JSON.parse(vector.body));
  const ts = Number(vector.headers["webhook-timestamp"]);
  assert.equal(signWebhook(vector.secret, vector.headers["webhook-id"], ts, vector.body), vector.headers["webhook-signature"]);
});
