// The Node side of benchmarks/ts_sdk.py: `client.execute` timed call by call, alternating with
// Node's bare fetch sending the same request (the floor any fetch-based client stands on).
// argv: <sdk dist/index.js URL> <base URL> <tokens JSON file> <body JSON file> <warmup> <n>
// Prints one JSON line: {"sdkMs": [...], "fetchMs": [...]}. Calls rotate over the tokens, so
// no user's rate limit is what is measured.
import { readFileSync } from "node:fs";

const [sdkPath, baseUrl, tokensFile, bodyFile, warmup, n] = process.argv.slice(2);
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

async function timed(send) {
  const t0 = performance.now();
  const result = await send();
  const ms = performance.now() - t0;
  if (result.status !== "completed") throw new Error(JSON.stringify(result));
  return ms;
}

// A long-lived client's steady state: the code is compiled and the connections are open.
for (let i = 0; i < Number(warmup); i++) {
  await timed(viaSdk);
  await timed(viaFetch);
}
const sdkMs = [];
const fetchMs = [];
for (let i = 0; i < Number(n); i++) {
  // Alternate, and swap which goes first, so neither gets the quieter half of the run.
  if (i % 2 === 0) {
    sdkMs.push(await timed(viaSdk));
    fetchMs.push(await timed(viaFetch));
  } else {
    fetchMs.push(await timed(viaFetch));
    sdkMs.push(await timed(viaSdk));
  }
}
console.log(JSON.stringify({ sdkMs, fetchMs }));
