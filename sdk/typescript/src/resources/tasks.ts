/**
 * `client.tasks`: status, cancellation, waiting, listing, live events and trajectories.
 *
 * @module
 */

import { APITimeoutError } from "../errors.js";
import { type EventStreamOptions, streamEvents } from "../events.js";
import type { RequestOptions, Transport } from "../http.js";
import type {
  CancelResponse,
  ExecuteResponse,
  TaskEventMessage,
  TaskPage,
  TaskState,
  TaskStatus,
  TaskType,
  Trajectory,
} from "../types.js";
import { listOf, object, seg } from "./shared.js";

/** The states a task does not leave. */
export const TERMINAL_STATES: ReadonlySet<string> = new Set(["completed", "failed", "cancelled"]);

/** Options of {@link TasksAPI.wait}. */
export interface WaitOptions extends RequestOptions {
  /** Give up after this long (the task keeps running); default: as long as it runs. */
  waitMs?: number | undefined;
  /** Between two polls (default 200 ms). */
  pollIntervalMs?: number | undefined;
}

/** Filters of {@link TasksAPI.list} and {@link TasksAPI.listPage}; they run on the server. */
export interface TaskListParams {
  /** At most 500 (default 50). */
  limit?: number;
  /** One or more states (an array, or comma-separated). */
  status?: TaskState | readonly TaskState[] | string;
  /** recursive, parallel or sequential. */
  type?: TaskType;
  /** The operation the task's input named (`rlm` for RLM tasks). */
  operation?: string;
  /** Only tasks created at or after this time. */
  since?: Date | string;
  /** Only tasks created before this time. */
  until?: Date | string;
}

/** {@link TaskListParams} and the page to read. */
export interface TaskPageParams extends TaskListParams {
  /** The previous page's `nextCursor` (with the same filters). */
  cursor?: string;
}

function taskQuery(params: TaskPageParams): Record<string, string | number | undefined> {
  const instant = (t: Date | string | undefined) => (t instanceof Date ? t.toISOString() : t);
  const status = Array.isArray(params.status) ? params.status.join(",") : (params.status as string | undefined);
  return {
    limit: params.limit,
    status,
    type: params.type,
    operation: params.operation,
    since: instant(params.since),
    until: instant(params.until),
    cursor: params.cursor,
  };
}

/** The result a task's status carries, or a placeholder while it has none. */
export function resultOf(status: TaskStatus): ExecuteResponse {
  if (status.result !== undefined && status.result !== null) return status.result;
  // A task cancelled before it ran has no result: its state, no success, zero counters.
  return {
    taskId: status.taskId,
    status: status.status,
    executionTimeMs: 0,
    agentCalls: 0,
    decompositionDepth: 0,
    success: false,
  };
}

/** `client.tasks`. */
export class TasksAPI {
  readonly #http: Transport;

  constructor(http: Transport) {
    this.#http = http;
  }

  /**
   * The task's status, `progress` and (once ended) result: `GET /tasks/{taskId}`.
   *
   * @throws {@link TaskNotFound} no such task for this caller.
   */
  get(taskId: string, options?: RequestOptions): Promise<TaskStatus> {
    return this.#http.send(
      { method: "GET", path: `/tasks/${seg(taskId)}`, parse: object<TaskStatus>("TaskStatus") },
      options,
    );
  }

  /**
   * Stop the whole task: `POST /tasks/{taskId}/cancel` (answers once nothing of it runs).
   *
   * @returns `status` is `cancelled`, `already_completed` or `not_found`.
   */
  cancel(taskId: string, options?: RequestOptions): Promise<CancelResponse> {
    return this.#http.send(
      { method: "POST", path: `/tasks/${seg(taskId)}/cancel`, parse: object<CancelResponse>("CancelResponse") },
      options,
    );
  }

  /**
   * Poll the task until it is completed, failed or cancelled, and return its result. A failed
   * task is returned, not thrown: look at `success` and `error`.
   *
   * @throws {@link APITimeoutError} still running after `waitMs` (it is not cancelled).
   */
  async wait(taskId: string, options: WaitOptions = {}): Promise<ExecuteResponse> {
    const interval = options.pollIntervalMs ?? 200;
    if (!(interval > 0)) throw new RangeError(`pollIntervalMs must be positive, got ${interval}`);
    const { sleep } = this.#http.settings;
    const deadline = options.waitMs === undefined ? undefined : performance.now() + options.waitMs;
    for (;;) {
      const status = await this.get(taskId, options);
      if (TERMINAL_STATES.has(status.status)) return resultOf(status);
      let pause = interval;
      if (deadline !== undefined) {
        const remaining = deadline - performance.now();
        if (remaining <= 0) {
          throw new APITimeoutError(
            `task ${JSON.stringify(taskId)} is still ${status.status} after ${options.waitMs} ms; it keeps running ` +
              "(wait again, or stop it with client.tasks.cancel)",
            { details: { taskId, status: status.status } },
          );
        }
        pause = Math.min(pause, remaining); // one last poll at the deadline, not past it
      }
      await sleep(pause, options.signal);
    }
  }

  /** The caller's newest tasks, newest first: `GET /tasks` (an `rlm:admin` sees its org's too). */
  list(params: TaskListParams = {}, options?: RequestOptions): Promise<TaskStatus[]> {
    return this.#http.send(
      { method: "GET", path: "/tasks", query: taskQuery(params), parse: listOf<TaskStatus>("tasks", "task list") },
      options,
    );
  }

  /**
   * One page of the caller's tasks, newest first, and the `nextCursor` of the next page.
   *
   * @example
   * let page = await client.tasks.listPage({ status: ["running", "pending"] });
   * while (page.nextCursor) page = await client.tasks.listPage({ status: ["running", "pending"], cursor: page.nextCursor });
   */
  listPage(params: TaskPageParams = {}, options?: RequestOptions): Promise<TaskPage> {
    return this.#http.send(
      { method: "GET", path: "/tasks", query: taskQuery(params), parse: object<TaskPage>("TaskPage") },
      options,
    );
  }

  /**
   * The task's events as they happen (`GET /tasks/{taskId}/events`, Server-Sent Events), to
   * `task.completed`, whose `data.result` is the result. A dropped connection is resumed after
   * the last event received (`Last-Event-ID`); pass `lastEventId` to resume yourself.
   *
   * @example
   * ```ts
   * for await (const event of client.tasks.events(taskId)) {
   *   if (event.event === "task.progress") console.log(event.data.percent);
   * }
   * ```
   */
  events(taskId: string, options: EventStreamOptions = {}): AsyncGenerator<TaskEventMessage, void, undefined> {
    seg(taskId);
    return streamEvents(this.#http, taskId, options);
  }

  /** An RLM task's turns, cells, sub-calls and child RLMs: `GET /tasks/{taskId}/trajectory`. */
  trajectory(taskId: string, options?: RequestOptions): Promise<Trajectory> {
    return this.#http.send(
      { method: "GET", path: `/tasks/${seg(taskId)}/trajectory`, parse: object<Trajectory>("Trajectory") },
      options,
    );
  }
}
