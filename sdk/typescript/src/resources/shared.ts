/**
 * What every resource uses: path segments, and readers of JSON answers.
 *
 * @module
 */

import { unexpectedResponse } from "../errors.js";
import type { Answer } from "../http.js";

/** An id as one path segment: `/` and friends are encoded, so it cannot address another route. */
export function seg(id: string): string {
  if (typeof id !== "string" || id === "") throw new TypeError(`an id must be a non-empty string, got ${JSON.stringify(id)}`);
  return encodeURIComponent(id);
}

/** The answer's JSON object (no further validation: the types come from the OpenAPI document). */
export function object<T>(what: string): (answer: Answer) => T {
  return (answer) => {
    let body: unknown;
    try {
      body = JSON.parse(answer.text());
    } catch {
      throw unexpectedResponse(answer.status, answer.headers, answer.text(), `${what} (not JSON)`);
    }
    if (typeof body !== "object" || body === null || Array.isArray(body)) {
      throw unexpectedResponse(answer.status, answer.headers, answer.text(), what);
    }
    return body as T;
  };
}

/** The list under `key` of an answer `{"<key>": [...]}`. */
export function listOf<T>(key: string, what: string): (answer: Answer) => T[] {
  const read = object<Record<string, unknown>>(what);
  return (answer) => {
    const items = read(answer)[key];
    if (!Array.isArray(items)) throw unexpectedResponse(answer.status, answer.headers, answer.text(), what);
    return items as T[];
  };
}

/** An answer without a body (204). */
export function nothing(): undefined {
  return undefined;
}
