// Type-checked against the packed package by tests/api/test_sdk_typescript.py, never run: the
// generated types accept what the service accepts and refuse what it would refuse (each line
// marked as an expected error fails the check if it compiles).
import { RLMClient, RateLimited, type TaskEventMessage, type UserQuotaStatus } from '@rlm-hypervisor/sdk';

const client = new RLMClient({ baseUrl: 'http://127.0.0.1:1/v1', maxRetries: 0 });
const request = { description: 'x', input: { items: [1, 2], operation: 'sum' as const } };

export const fine = () => client.execute({ type: 'parallel', ...request, options: { leafSize: 1 } });
// @ts-expect-error: type is recursive | parallel | sequential
export const badType = () => client.execute({ ...request, type: 'loop' });
export const badOperation = () =>
  // @ts-expect-error: no such built-in operation
  client.execute({ type: 'recursive', description: 'x', input: { items: [1], operation: 'nope' } });
export const badPriority = () =>
  // @ts-expect-error: priority is low | normal | high | critical
  client.execute({ type: 'recursive', ...request, options: { priority: 'urgent' } });
// @ts-expect-error: the storage read needs its range
export const badRead = () => client.storage.read({ connector: 'local', key: 'k' });

export const status: () => Promise<UserQuotaStatus> = () => client.quotas.getStatus();
export const left = async (): Promise<number> => (await client.quotas.getStatus()).daily.agentsRemaining;
export async function follow(taskId: string): Promise<number> {
  const events: TaskEventMessage[] = [];
  for await (const event of client.tasks.events(taskId, { lastEventId: 3 })) events.push(event);
  return events.length;
}
export const retryAfter = (err: unknown) => (err instanceof RateLimited ? err.retryAfterS : undefined);

// Each policy's settings are its own, by its id.
export const raise = () => client.security.patchPolicy('input-size', { settings: { maxChars: 1024 } });
// @ts-expect-error: not a setting of the injection policy
export const wrongSetting = () => client.security.patchPolicy('input-injection', { settings: { maxChars: 1 } });
// @ts-expect-error: no such policy
export const noPolicy = () => client.security.patchPolicy('input-everything', { enabled: false });
