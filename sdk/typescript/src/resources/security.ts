/**
 * `client.security`: input validation, the audit log and the org's policies.
 *
 * @module
 */

import type { RequestOptions, Transport } from "../http.js";
import type {
  SecurityContext,
  SecurityEventPage,
  SecurityPolicy,
  SecurityPolicyId,
  SecurityPolicyList,
  SecurityPolicyPatch,
  SecurityPolicyUpdate,
  SecurityValidateResponse,
} from "../types.js";
import { object, seg } from "./shared.js";

/** Filters of {@link SecurityAPI.events}. */
export interface SecurityEventsParams {
  /** One or more (comma-separated) of info, low, medium, high, critical. */
  severity?: string;
  /** At most 1000 (default 100). */
  limit?: number;
  /** The previous page's `nextCursor`. */
  cursor?: string;
  /** Only events at or after this time. */
  since?: Date | string;
  /** One or more (comma-separated) event types, e.g. `auth.forbidden`. */
  type?: string;
}

/** `client.security`. */
export class SecurityAPI {
  readonly #http: Transport;

  constructor(http: Transport) {
    this.#http = http;
  }

  /** Check `input` against the policies: `POST /security/validate` (any token). */
  validate(input: string, context?: SecurityContext, options?: RequestOptions): Promise<SecurityValidateResponse> {
    return this.#http.send(
      {
        method: "POST",
        path: "/security/validate",
        json: context === undefined ? { input } : { input, context },
        parse: object<SecurityValidateResponse>("SecurityValidateResponse"),
      },
      options,
    );
  }

  /** One page of the org's audit log, newest first: `GET /security/events` (`rlm:admin`). */
  events(params: SecurityEventsParams = {}, options?: RequestOptions): Promise<SecurityEventPage> {
    const since = params.since instanceof Date ? params.since.toISOString() : params.since;
    return this.#http.send(
      {
        method: "GET",
        path: "/security/events",
        query: { severity: params.severity, limit: params.limit, cursor: params.cursor, since, type: params.type },
        parse: object<SecurityEventPage>("SecurityEventPage"),
      },
      options,
    );
  }

  /** The org's policies in force: `GET /security/policies` (`rlm:admin`). */
  policies(options?: RequestOptions): Promise<SecurityPolicyList> {
    return this.#http.send(
      { method: "GET", path: "/security/policies", parse: object<SecurityPolicyList>("SecurityPolicyList") },
      options,
    );
  }

  /**
   * Replace a policy of the org: `PUT /security/policies/{policyId}` (`rlm:admin`); the body's
   * `settings` are that policy's own, typed by its id.
   */
  putPolicy<Id extends SecurityPolicyId>(
    policyId: Id,
    policy: SecurityPolicyUpdate<Id>,
    options?: RequestOptions,
  ): Promise<SecurityPolicy> {
    return this.#http.send(
      { method: "PUT", path: `/security/policies/${seg(policyId)}`, json: policy, parse: object<SecurityPolicy>("SecurityPolicy") },
      options,
    );
  }

  /** Change some fields of a policy (settings keys are merged): `PATCH /security/policies/{policyId}`. */
  patchPolicy<Id extends SecurityPolicyId>(
    policyId: Id,
    changes: SecurityPolicyPatch<Id>,
    options?: RequestOptions,
  ): Promise<SecurityPolicy> {
    return this.#http.send(
      { method: "PATCH", path: `/security/policies/${seg(policyId)}`, json: changes, parse: object<SecurityPolicy>("SecurityPolicy") },
      options,
    );
  }
}
