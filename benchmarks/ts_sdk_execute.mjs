// The TypeScript SDK's side of benchmarks/ts_sdk.py: `client.execute` timed call by call.
// argv: <sdk dist/index.js> <base URL> <tokens JSON file> <body JSON file> <warmup> <n> [fetch]
// Prints one JSON line: {"samplesMs": [...]}. Clients rotate over the tokens, so no user's
// rate limit is what is measured. With "fetch" last, the same request is sent with Node's bare
// fetch instead (the floor any fetch-based client stands on).
import { readFileSync } from "node:fs";

const [sdkPath, baseUrl, tokensFile, bodyFile, warmup, n, mode] = process.argv.slice(2);
const { RLMClient } = await import(sdkPath);
const tokens = JSON.parse(readFileSync(tokensFile, "utf8"));
const body = JSON.parse(readFileSync(bodyFile, "utf8"));
const clients = tokens.map((apiKey) => new RLMClient({ apiKey, baseUrl }));
let k = 0;
const viaSdk = async () => clients[k++ % clients.length].execute(body);
const viaFetch = async () => {
  const response = await fetch(`${baseUrl}/execute`, {
    method: "POST",
    headers: {
      Authorization: `Bearer ${tokens[k++ % tokens.length]}`,
      "Content-Type": "application/json",
      Accept: "application/json",
      "Idempotency-Key": crypto.randomUUID(),
    },
    body: JSON.stringify(body),
  });
  return response.json();
};
const send = mode === "fetch" ? viaFetch : viaSdk;
const once = async () => {
  const result = await send();
  if (result.status !== "completed") throw new Error(JSON.stringify(result));
};
for (let i = 0; i < Number(warmup); i++) await once();
const samplesMs = [];
for (let i = 0; i < Number(n); i++) {
  const t0 = performance.now();
  await once();
  samplesMs.push(performance.now() - t0);
}
console.log(JSON.stringify({ samplesMs }));
