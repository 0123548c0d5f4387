// client.storage.read: byte ranges as raw bytes, and the refusals.
import assert from "node:assert/strict";
import { test } from "node:test";

import { Forbidden, InvalidInput } from "../dist/index.js";
import { client } from "./live.mjs";

const key = process.env.RLM_TEST_BLOB_KEY;
const blob = Buffer.from(process.env.RLM_TEST_BLOB_B64 ?? "", "base64");

test("reads bytes [start, end) of a key, raw, by every method", async () => {
  assert.ok(key && blob.length > 5000);
  const reader = client("user");
  const bytes = await reader.storage.read({ connector: "local", key, start: 1000, end: 5000 });
  assert.ok(bytes instanceof Uint8Array);
  assert.deepEqual(Buffer.from(bytes), blob.subarray(1000, 5000));
  for (const method of ["mmap", "direct", "standard", "async"]) {
    const got = await reader.storage.read({ connector: "local", key, start: 7, end: 300, method });
    assert.deepEqual(Buffer.from(got), blob.subarray(7, 300), method);
  }
  const tail = await reader.storage.read({ connector: "local", key, start: blob.length - 10, end: blob.length + 99 });
  assert.deepEqual(Buffer.from(tail), blob.subarray(blob.length - 10));
});

test("keys outside the caller's policy and bad ranges are refused", async () => {
  const reader = client("user");
  await assert.rejects(reader.storage.read({ connector: "local", key: "../state.db", start: 0, end: 10 }), Forbidden);
  await assert.rejects(
    reader.storage.read({ connector: "local", key: "public/missing.bin", start: 0, end: 10 }),
    InvalidInput,
  );
  await assert.rejects(reader.storage.read({ connector: "local", key, start: 10, end: 10 }), InvalidInput);
  await assert.rejects(reader.storage.read({ connector: "nope", key, start: 0, end: 10 }), InvalidInput);
  await assert.rejects(client("executeOnly").storage.read({ connector: "local", key, start: 0, end: 10 }), Forbidden);
});
