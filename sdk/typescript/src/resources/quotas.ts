/**
 * `client.quotas`: user, team and organisation quotas.
 *
 * @module
 */

import { randomUUID } from "node:crypto";

import type { RequestOptions, Transport } from "../http.js";
import type {
  AllocationDecision,
  MemberAllocation,
  OrgCreate,
  Organization,
  OrganizationHierarchy,
  OrgQuotaUpdate,
  ProjectCreate,
  QuotaConfig,
  TeamCreate,
  TeamMember,
  TeamQuotaStatus,
  TransferReceiptOut,
  UsageHistory,
  UserQuotaStatus,
} from "../types.js";
import { object, seg } from "./shared.js";

/** A transfer between two members of a team (`POST /quotas/team/{teamId}/transfers`). */
export interface TransferParams {
  fromUserId: string;
  toUserId: string;
  agents?: number;
  computeHours?: number;
}

/** Whose usage over time, and in which window and bucket size (`client.quotas.usage`). */
export interface UsageParams {
  /** A user (left out, with no team or org: the API key's own user, `me`). */
  userId?: string;
  /** A team's pool instead (its members and its org's managers). */
  teamId?: string;
  /** An org's subtree instead (its managers). */
  orgId?: string;
  /** The quota window: `daily` (default), `weekly` or `monthly`. */
  period?: "daily" | "weekly" | "monthly";
  /** The size of each bucket: `hour` (default) or `day`. */
  bucket?: "hour" | "day";
}

/** Options of calls that take an `Idempotency-Key`. */
export interface IdempotentOptions extends RequestOptions {
  /** Sent as `Idempotency-Key`; a new one per call when left out (the SDK's retries reuse it). */
  idempotencyKey?: string | undefined;
}

/** `client.quotas`. */
export class QuotasAPI {
  readonly #http: Transport;

  constructor(http: Transport) {
    this.#http = http;
  }

  /**
   * A user's daily, weekly and monthly windows and concurrent agents: `GET /quotas/user/{userId}`.
   *
   * @param userId - The user; left out, the API key's own user (`me`).
   */
  getStatus(userId?: string, options?: RequestOptions): Promise<UserQuotaStatus> {
    const user = userId === undefined ? "me" : seg(userId);
    return this.#http.send(
      { method: "GET", path: `/quotas/user/${user}`, parse: object<UserQuotaStatus>("UserQuotaStatus") },
      options,
    );
  }

  /**
   * Usage over time in the current window, bucket by bucket (extension):
   * `GET /quotas/user/{userId}/usage`, `/quotas/team/{teamId}/usage` or
   * `/quotas/enterprise/org/{orgId}/usage`.
   */
  usage(params: UsageParams = {}, options?: RequestOptions): Promise<UsageHistory> {
    const named = [params.userId, params.teamId, params.orgId].filter((x) => x !== undefined);
    if (named.length > 1) throw new TypeError("name one of userId, teamId, orgId");
    const path =
      params.teamId !== undefined
        ? `/quotas/team/${seg(params.teamId)}/usage`
        : params.orgId !== undefined
          ? `/quotas/enterprise/org/${seg(params.orgId)}/usage`
          : `/quotas/user/${params.userId === undefined ? "me" : seg(params.userId)}/usage`;
    return this.#http.send(
      {
        method: "GET",
        path,
        query: { period: params.period ?? "daily", bucket: params.bucket ?? "hour" },
        parse: object<UsageHistory>("UsageHistory"),
      },
      options,
    );
  }

  /** Whether `agentsRequested` more agents would be admitted now (a dry run, charges nothing). */
  check(
    userId: string,
    agentsRequested: number,
    sessionId?: string,
    options?: RequestOptions,
  ): Promise<AllocationDecision> {
    return this.#http.send(
      {
        method: "POST",
        path: `/quotas/user/${seg(userId)}/check`,
        json: sessionId === undefined ? { agentsRequested } : { agentsRequested, sessionId },
        parse: object<AllocationDecision>("AllocationDecision"),
      },
      options,
    );
  }

  /** Set a user's limits: `PUT /quotas/user/{userId}` (`rlm:quota:manage`). */
  setConfig(config: QuotaConfig, options?: RequestOptions): Promise<QuotaConfig> {
    return this.#http.send(
      { method: "PUT", path: `/quotas/user/${seg(config.userId)}`, json: config, parse: object<QuotaConfig>("QuotaConfig") },
      options,
    );
  }

  /** A team's pool, usage, members and projects: `GET /quotas/team/{teamId}`. */
  team(teamId: string, options?: RequestOptions): Promise<TeamQuotaStatus> {
    return this.#http.send(
      { method: "GET", path: `/quotas/team/${seg(teamId)}`, parse: object<TeamQuotaStatus>("TeamQuotaStatus") },
      options,
    );
  }

  /** Create a team with its monthly pool: `POST /quotas/team` (not repeated after a lost answer). */
  createTeam(team: TeamCreate, options?: RequestOptions): Promise<TeamQuotaStatus> {
    return this.#http.send(
      { method: "POST", path: "/quotas/team", json: team, idempotent: false, parse: object<TeamQuotaStatus>("TeamQuotaStatus") },
      options,
    );
  }

  /** Add a member (or change its role) and set its share: `PUT /quotas/team/{teamId}/members/{userId}`. */
  setMember(teamId: string, userId: string, member: MemberAllocation = {}, options?: RequestOptions): Promise<TeamMember> {
    return this.#http.send(
      {
        method: "PUT",
        path: `/quotas/team/${seg(teamId)}/members/${seg(userId)}`,
        json: member,
        parse: object<TeamMember>("TeamMember"),
      },
      options,
    );
  }

  /** A project's share of the team pool: `PUT /quotas/team/{teamId}/projects/{projectId}`. */
  setProject(teamId: string, projectId: string, project: ProjectCreate, options?: RequestOptions): Promise<TeamQuotaStatus> {
    return this.#http.send(
      {
        method: "PUT",
        path: `/quotas/team/${seg(teamId)}/projects/${seg(projectId)}`,
        json: project,
        parse: object<TeamQuotaStatus>("TeamQuotaStatus"),
      },
      options,
    );
  }

  /**
   * Move part of one member's allocation to another: `POST /quotas/team/{teamId}/transfers`,
   * with an `Idempotency-Key` (the same on every retry, so a transfer never happens twice).
   */
  transfer(teamId: string, transfer: TransferParams, options: IdempotentOptions = {}): Promise<TransferReceiptOut> {
    return this.#http.send(
      {
        method: "POST",
        path: `/quotas/team/${seg(teamId)}/transfers`,
        json: transfer,
        headers: { "Idempotency-Key": options.idempotencyKey ?? randomUUID() },
        parse: object<TransferReceiptOut>("TransferReceiptOut"),
      },
      options,
    );
  }

  /** An organisation with its ancestors (root first), descendants and siblings. */
  orgHierarchy(orgId: string, options?: RequestOptions): Promise<OrganizationHierarchy> {
    return this.#http.send(
      {
        method: "GET",
        path: `/quotas/enterprise/org/${seg(orgId)}/hierarchy`,
        parse: object<OrganizationHierarchy>("OrganizationHierarchy"),
      },
      options,
    );
  }

  /** Set an organisation's limits (`PATCH`); limits left out are not changed. */
  updateOrg(orgId: string, limits: OrgQuotaUpdate, options?: RequestOptions): Promise<Organization> {
    return this.#http.send(
      {
        method: "PATCH",
        path: `/quotas/enterprise/org/${seg(orgId)}`,
        json: limits,
        parse: object<Organization>("Organization"),
      },
      options,
    );
  }

  /** Create an organisation under `parentId`: `POST /quotas/enterprise/org` (not repeated). */
  createOrg(org: OrgCreate, options?: RequestOptions): Promise<Organization> {
    return this.#http.send(
      {
        method: "POST",
        path: "/quotas/enterprise/org",
        json: org,
        idempotent: false,
        parse: object<Organization>("Organization"),
      },
      options,
    );
  }
}
