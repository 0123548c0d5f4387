/**
 * A task's event stream (`GET /tasks/{taskId}/events`, Server-Sent Events) as an async iterator.
 *
 * {@link SSEDecoder} reads `text/event-stream` lines by the WHATWG rules (`field: value`, `:`
 * comments, a blank line ends a message). {@link streamEvents} yields each message's task event
 * and keeps the stream going: a dropped connection, a stream silent for longer than the idle
 * timeout (the server sends a keep-alive every ~15 s) or one that ends before `task.completed`
 * is reopened with `Last-Event-ID` set to the last event received, after the retry policy's
 * backoff; `maxRetries` failures in a row without an event in between give up. Errors the API
 * answers (404 `TASK_NOT_FOUND`, 403...) are thrown as they are.
 *
 * @module
 */

import { APIConnectionError, InternalError, RLMError } from "./errors.js";
import type { Call, RequestOptions, Transport } from "./http.js";
import { backoffMs } from "./retry.js";
import type { TaskEventMessage } from "./types.js";

/** How long a stream may stay silent before it is taken for dead and reopened. */
export const STREAM_IDLE_TIMEOUT_MS = 60_000;

/** One SSE message. */
export interface ServerSentEvent {
  /** Its type (`message` when the stream named none). */
  event: string;
  data: string;
  id: string | undefined;
  retry: number | undefined;
}

/** Decodes `text/event-stream`, one line (without its end) at a time. */
export class SSEDecoder {
  private event = "";
  private data: string[] = [];
  private id: string | undefined;
  private retry: number | undefined;

  /** Take one line; returns the message a blank line completes, if any. */
  feed(line: string): ServerSentEvent | undefined {
    if (line === "") {
      if (this.data.length === 0) {
        this.event = "";
        return undefined;
      }
      const message = { event: this.event || "message", data: this.data.join("\n"), id: this.id, retry: this.retry };
      this.event = "";
      this.data = [];
      return message;
    }
    if (line.startsWith(":")) return undefined; // a comment: the server's keep-alive
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.event = value;
    else if (field === "id" && !value.includes("\0")) this.id = value;
    else if (field === "retry" && /^\d+$/.test(value)) this.retry = Number(value);
    return undefined;
  }
}

/** Splits decoded text into lines (`\r\n`, `\n` or `\r`), holding back an unfinished one. */
export class LineSplitter {
  private buffer = "";
  private pendingCR = false;

  /** The complete lines `chunk` finishes. */
  push(chunk: string): string[] {
    let text = chunk;
    if (this.pendingCR && text.startsWith("\n")) text = text.slice(1); // the \n of a split \r\n
    this.pendingCR = false;
    const parts = (this.buffer + text).split(/\r\n|\r|\n/);
    this.buffer = parts.pop() ?? "";
    if (text.endsWith("\r")) this.pendingCR = true;
    return parts;
  }
}

function taskEvent(message: ServerSentEvent): TaskEventMessage {
  let value: unknown;
  try {
    value = JSON.parse(message.data);
  } catch {
    value = undefined;
  }
  const event = value as Partial<TaskEventMessage> | undefined;
  if (typeof event?.id !== "number" || typeof event.event !== "string" || typeof event.data !== "object") {
    throw new InternalError("the event stream sent a message that is not a task event", {
      details: { event: message.event, data: message.data.slice(0, 1000) },
    });
  }
  return event as TaskEventMessage;
}

/** Options of {@link streamEvents}. */
export interface EventStreamOptions extends RequestOptions {
  /** Resume after this event's `id` (default: from the first event). */
  lastEventId?: number | undefined;
  /** Reopen a stream silent for this long (default {@link STREAM_IDLE_TIMEOUT_MS}). */
  idleTimeoutMs?: number | undefined;
}

function eventsCall(taskId: string, after: number | undefined): Call<unknown> {
  const headers: Record<string, string> = { Accept: "text/event-stream", "Cache-Control": "no-cache" };
  if (after !== undefined) headers["Last-Event-ID"] = String(after);
  return {
    method: "GET",
    path: `/tasks/${encodeURIComponent(taskId)}/events`,
    headers,
    parse: () => undefined,
  };
}

/**
 * The task's events from the one after `lastEventId` to `task.completed` (the last one, whose
 * `data.result` is the task's result).
 *
 * @throws {@link RLMError} the API refused (`TaskNotFound`, `Forbidden`, `RateLimited`...).
 * @throws {@link APIConnectionError} the connection kept failing.
 */
export async function* streamEvents(
  transport: Transport,
  taskId: string,
  options: EventStreamOptions = {},
): AsyncGenerator<TaskEventMessage, void, undefined> {
  const idleMs = options.idleTimeoutMs ?? STREAM_IDLE_TIMEOUT_MS;
  const { maxRetries, random, sleep } = transport.settings;
  let after = options.lastEventId;
  let failures = 0;
  for (;;) {
    let failure: unknown;
    const opened = await transport.open(eventsCall(taskId, after), { signal: options.signal }, idleMs);
    const reader = opened.response.body?.getReader();
    try {
      if (reader === undefined) throw new APIConnectionError("the event stream has no body");
      const decoder = new TextDecoder();
      const lines = new LineSplitter();
      const sse = new SSEDecoder();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        opened.alive(idleMs);
        for (const line of lines.push(decoder.decode(value, { stream: true }))) {
          const message = sse.feed(line);
          if (message === undefined) continue;
          const event = taskEvent(message);
          after = event.id;
          failures = 0;
          yield event;
          if (event.event === "task.completed") return;
        }
      }
      failure = new APIConnectionError(`the event stream of task ${JSON.stringify(taskId)} ended before task.completed`);
    } catch (error) {
      if (options.signal?.aborted) throw options.signal.reason;
      if (error instanceof RLMError && !(error instanceof APIConnectionError)) throw error;
      failure = opened.timedOut()
        ? new APIConnectionError(`the event stream of task ${JSON.stringify(taskId)} was silent for ${idleMs} ms`)
        : error;
    } finally {
      opened.close();
      // Leaving early (a `break` in the caller's loop) must release the connection.
      await reader?.cancel().catch(() => undefined);
    }
    if (failures >= maxRetries) {
      throw failure instanceof RLMError ? failure : new APIConnectionError(String(failure), { cause: failure });
    }
    await sleep(backoffMs(failures, random), options.signal);
    failures += 1;
  }
}
