/**
 * Task events: what workers (with `TASK_EVENTS=true`, like Celery's `-E`)
 * and callers publish to the fanout exchange {@linkcode EVENTS_EXCHANGE} as
 * tasks move, for live views such as `deno task dashboard`. Fire and
 * forget: an event may be lost, a task never is.
 *
 * @module
 */

import { decodeJson } from "./json.ts";
import { CONTENT_TYPE, isPlainObject, type Message, type Parsed, refuse } from "./message.ts";

/** The fanout exchange task events are published to. */
export const EVENTS_EXCHANGE = "tasks.events";

/** AMQP `type` property of a task event. */
export const EVENT_MESSAGE_TYPE = "task.event";

/** What happened to a task. */
export type TaskEventKind =
  | "task-sent"
  | "task-started"
  | "task-retried"
  | "task-succeeded"
  | "task-failed"
  | "task-rejected";

/** Every {@linkcode TaskEventKind}. */
export const TASK_EVENT_KINDS: readonly TaskEventKind[] = [
  "task-sent",
  "task-started",
  "task-retried",
  "task-succeeded",
  "task-failed",
  "task-rejected",
];

/** One task event. */
export interface TaskEvent {
  kind: TaskEventKind;
  function: string;
  queue: string;
  task_id: string | null;
  /** When it happened (ISO 8601). */
  at: string;
  attempt?: number;
  /** The worker (or, for `task-sent`, the caller). */
  worker?: string;
  duration_ms?: number;
  error_type?: string;
  error?: string;
  /** For `task-failed` and `task-rejected`: the dead-letter reason. */
  reason?: string;
  /** For `task-retried`: the wait before the next attempt. */
  delay_ms?: number;
  /** The task's OpenTelemetry trace id, when the sender traces (see docs/tracing.md). */
  trace_id?: string;
}

const encoder = new TextEncoder();

/** Builds the message of a task event. */
export function encodeTaskEvent(event: TaskEvent): Message {
  return {
    body: encoder.encode(JSON.stringify(event)),
    properties: { contentType: CONTENT_TYPE, type: EVENT_MESSAGE_TYPE },
  };
}

/** Parses a task event; an event of no known kind is refused. */
export function parseTaskEvent(body: Uint8Array): Parsed<TaskEvent> {
  const json = decodeJson(body, { what: "the task event", maxBytes: 64 * 1024 });
  if (!json.ok) return json;
  const event = json.value;
  if (
    !isPlainObject(event) || !TASK_EVENT_KINDS.includes(event.kind as TaskEventKind) ||
    typeof event.function !== "string" || typeof event.queue !== "string" ||
    typeof event.at !== "string"
  ) {
    return refuse(
      "InvalidEvent",
      "Cannot accept the task event as its kind, function, queue or at is wrong",
    );
  }
  return { ok: true, value: event as unknown as TaskEvent };
}
