/**
 * A task event as the dashboard keeps it: only the fields of the contract,
 * each bounded. `parseTaskEvent` takes up to 64 KiB of JSON with any extra
 * fields, and whoever may write `tasks.events` chooses every byte of it;
 * the dashboard keeps hundreds of events and thousands of sent times, so
 * each one it keeps must be small whatever was sent.
 *
 * @module
 */

import {
  boundText,
  MAX_ERROR_MESSAGE_CHARS,
  MAX_ERROR_TYPE_CHARS,
  type TaskEvent,
} from "../core/contract/mod.ts";

/** Longest task id kept: an event with a longer one is dropped whole (AMQP's message ids hold 255). */
export const MAX_TASK_ID_CHARS = 255;

/** Longest text kept of the other fields. */
const LIMITS = {
  queue: 63,
  at: 40,
  worker: 128,
  reason: 32,
  errorType: MAX_ERROR_TYPE_CHARS,
  error: MAX_ERROR_MESSAGE_CHARS,
} as const;

const TRACE_ID = /^[0-9a-f]{32}$/;

function text(value: unknown, max: number): string | undefined {
  return typeof value === "string" ? boundText(value, max) : undefined;
}

function number(value: unknown): number | undefined {
  return typeof value === "number" && Number.isFinite(value) ? value : undefined;
}

/**
 * `event` with its known fields only, each bounded, or `undefined` when its
 * task id is longer than {@linkcode MAX_TASK_ID_CHARS} or not a string (a
 * cut id would match another task's).
 */
export function boundTaskEvent(event: TaskEvent): TaskEvent | undefined {
  const id = event.task_id;
  if (id !== null && (typeof id !== "string" || id.length > MAX_TASK_ID_CHARS)) return undefined;
  const bounded: TaskEvent = {
    kind: event.kind,
    function: event.function,
    queue: boundText(event.queue, LIMITS.queue),
    task_id: id,
    at: boundText(event.at, LIMITS.at),
  };
  const optional: Partial<TaskEvent> = {
    attempt: number(event.attempt),
    worker: text(event.worker, LIMITS.worker),
    duration_ms: number(event.duration_ms),
    error_type: text(event.error_type, LIMITS.errorType),
    error: text(event.error, LIMITS.error),
    reason: text(event.reason, LIMITS.reason),
    delay_ms: number(event.delay_ms),
    trace_id: typeof event.trace_id === "string" && TRACE_ID.test(event.trace_id)
      ? event.trace_id
      : undefined,
  };
  for (const [key, value] of Object.entries(optional)) {
    if (value !== undefined) (bounded as unknown as Record<string, unknown>)[key] = value;
  }
  return bounded;
}
