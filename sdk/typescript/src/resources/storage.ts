/**
 * `client.storage`: byte-range reads.
 *
 * @module
 */

import { unexpectedResponse } from "../errors.js";
import type { Answer, RequestOptions, Transport } from "../http.js";
import type { StorageReadRequest } from "../types.js";

/** What {@link StorageAPI.read} reads: bytes `[start, end)` of `key` in `connector`. */
export interface StorageReadParams {
  /** `local`, `s3`, `gcs`: the connectors the service names. */
  connector: StorageReadRequest["connector"] | (string & {});
  key: string;
  start: number;
  /** One past the last byte; fewer bytes come back at the end of the object. */
  end: number;
  method?: StorageReadRequest["method"];
}

function bytes(answer: Answer): Uint8Array {
  if (!(answer.headers.get("content-type") ?? "").startsWith("application/json")) return answer.body;
  // A server that ignored "Accept: application/octet-stream" answers the JSON form.
  let data: unknown;
  try {
    data = (JSON.parse(answer.text()) as { data?: unknown }).data;
  } catch {
    data = undefined;
  }
  if (typeof data !== "string") throw unexpectedResponse(answer.status, answer.headers, answer.text(), "StorageReadResponse");
  return new Uint8Array(Buffer.from(data, "base64"));
}

/** `client.storage`. */
export class StorageAPI {
  readonly #http: Transport;

  constructor(http: Transport) {
    this.#http = http;
  }

  /**
   * Bytes `start` (inclusive) to `end` (exclusive) of an object: `POST /storage/read`, asked for
   * raw (`Accept: application/octet-stream`, no base64 on the wire).
   */
  read(params: StorageReadParams, options?: RequestOptions): Promise<Uint8Array> {
    return this.#http.send(
      {
        method: "POST",
        path: "/storage/read",
        json: { method: "auto", ...params },
        headers: { Accept: "application/octet-stream" },
        parse: bytes,
      },
      options,
    );
  }
}
