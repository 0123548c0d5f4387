/**
 * `client.evaluations`: evaluation runs (`rlm eval oolong` reports) recorded by the API.
 *
 * @module
 */

import type { RequestOptions, Transport } from "../http.js";
import type { EvaluationReport, EvaluationRun, EvaluationSummary } from "../types.js";
import { listOf, object, seg } from "./shared.js";

/** `client.evaluations`. */
export class EvaluationsAPI {
  readonly #http: Transport;

  constructor(http: Transport) {
    this.#http = http;
  }

  /**
   * Record a report (the JSON `rlm eval oolong --json` writes) as a run of the key's user, in
   * its org: `POST /evaluations` (`rlm:execute`). Not retried after a lost answer: a repeat
   * would record a second run.
   */
  record(report: EvaluationReport, options?: RequestOptions): Promise<EvaluationRun> {
    return this.#http.send(
      { method: "POST", path: "/evaluations", json: report, idempotent: false, parse: object<EvaluationRun>("EvaluationRun") },
      options,
    );
  }

  /** The runs the key's user may see (its own and its org's), newest first: `GET /evaluations`. */
  list(params: { limit?: number } = {}, options?: RequestOptions): Promise<EvaluationSummary[]> {
    return this.#http.send(
      { method: "GET", path: "/evaluations", query: { limit: params.limit }, parse: listOf<EvaluationSummary>("evaluations", "evaluation list") },
      options,
    );
  }

  /** One run with its per-question results: `GET /evaluations/{runId}`. */
  get(runId: string, options?: RequestOptions): Promise<EvaluationRun> {
    return this.#http.send(
      { method: "GET", path: `/evaluations/${seg(runId)}`, parse: object<EvaluationRun>("EvaluationRun") },
      options,
    );
  }
}
