/**
 * The wire types, by their OpenAPI names: aliases of `components["schemas"]` in the generated
 * `schema.ts` (`npm run generate`; the tests fail when it drifts from the service's document).
 *
 * @module
 */

import type { components, operations, paths } from "./schema.js";

export type { components, operations, paths };

/** Every schema of the document by name (`Schemas["InputSizeSettingsPatch"]`...). */
export type Schemas = components["schemas"];

export type AllocationCheck = Schemas["AllocationCheck"];
export type AllocationDecision = Schemas["AllocationDecision"];
export type Budget = Schemas["Budget"];
export type CancelResponse = Schemas["CancelResponse"];
export type Delivery = Schemas["Delivery"];
export type DeliveryAttempt = Schemas["DeliveryAttempt"];
export type ErrorEnvelope = Schemas["ErrorEnvelope"];
export type EvaluationList = Schemas["EvaluationList"];
export type EvaluationReport = Schemas["EvaluationReport"];
export type EvaluationRun = Schemas["EvaluationRun"];
export type EvaluationSummary = Schemas["EvaluationSummary"];
export type LatencyFigures = Schemas["LatencyFigures"];
export type ModeFigures = Schemas["ModeFigures"];
export type ErrorInfo = Schemas["ErrorInfo"];
export type ExecuteOptions = Schemas["ExecuteOptions"];
export type ExecuteRequest = Schemas["ExecuteRequest"];
export type ExecuteResponse = Schemas["ExecuteResponse"];
export type MemberAllocation = Schemas["MemberAllocation"];
export type OrgCreate = Schemas["OrgCreate"];
export type OrgQuotaUpdate = Schemas["OrgQuotaUpdate"];
export type Organization = Schemas["Organization"];
export type OrganizationHierarchy = Schemas["OrganizationHierarchy"];
export type Progress = Schemas["Progress"];
export type ProjectAllocation = Schemas["ProjectAllocation"];
export type ProjectCreate = Schemas["ProjectCreate"];
export type QuotaConfig = Schemas["QuotaConfig"];
export type QuotaPeriod = Schemas["QuotaPeriod"];
export type QuotaTransfer = Schemas["QuotaTransfer"];
export type SecretRotated = Schemas["SecretRotated"];
export type SecretRotation = Schemas["SecretRotation"];
export type SecurityContext = Schemas["SecurityContext"];
export type SecurityEvent = Schemas["SecurityEvent"];
export type SecurityEventPage = Schemas["SecurityEventPage"];
export type SecurityPolicy = Schemas["SecurityPolicy"];
export type SecurityPolicyList = Schemas["SecurityPolicyList"];
export type SecurityValidateRequest = Schemas["SecurityValidateRequest"];
export type SecurityValidateResponse = Schemas["SecurityValidateResponse"];
export type StorageReadRequest = Schemas["StorageReadRequest"];
export type StorageReadResponse = Schemas["StorageReadResponse"];
export type TaskEventMessage = Schemas["TaskEventMessage"];
export type TaskPage = Schemas["TaskPage"];
export type TaskStatus = Schemas["TaskStatus"];
export type TeamConfig = Schemas["TeamConfig"];
export type TeamCreate = Schemas["TeamCreate"];
export type TeamMember = Schemas["TeamMember"];
export type TeamQuotaStatus = Schemas["TeamQuotaStatus"];
export type TeamUsage = Schemas["TeamUsage"];
export type Trajectory = Schemas["Trajectory"];
export type TransferReceiptOut = Schemas["TransferReceiptOut"];
export type Usage = Schemas["Usage"];
export type UsageHistory = Schemas["UsageHistory"];
export type UsagePoint = Schemas["UsagePoint"];
export type UserQuotaStatus = Schemas["UserQuotaStatus"];
export type Violation = Schemas["Violation"];
export type Webhook = Schemas["Webhook"];
export type WebhookCreate = Schemas["WebhookCreate"];
export type WebhookCreated = Schemas["WebhookCreated"];
export type WebhookUpdate = Schemas["WebhookUpdate"];

/** `ExecuteRequest["type"]`: how the work is cut. */
export type TaskType = ExecuteRequest["type"];
/** `ExecuteRequest["complexity"]`. */
export type Complexity = NonNullable<ExecuteRequest["complexity"]>;
/** A task's status. */
export type TaskState = TaskStatus["status"];
/** The events a webhook may subscribe to. */
export type WebhookEventType = WebhookCreate["events"][number];

type PolicyPath = Extract<keyof paths, `/v1/security/policies/${string}`>;
/** The ids of the security policies (`input-injection`, `audit-log`...): one route each. */
export type SecurityPolicyId = PolicyPath extends `/v1/security/policies/${infer Id}` ? Id : never;
type JsonBody<Op> = Op extends { requestBody: { content: { "application/json": infer Body } } } ? Body : never;
/** What `PUT /security/policies/{policyId}` takes for that policy (its own settings). */
export type SecurityPolicyUpdate<Id extends SecurityPolicyId = SecurityPolicyId> = JsonBody<
  paths[`/v1/security/policies/${Id}`]["put"]
>;
/** What `PATCH /security/policies/{policyId}` takes for that policy (its own settings). */
export type SecurityPolicyPatch<Id extends SecurityPolicyId = SecurityPolicyId> = JsonBody<
  paths[`/v1/security/policies/${Id}`]["patch"]
>;
