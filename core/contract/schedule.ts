/**
 * Schedules on the wire: where the scheduler sends a function's ticks, how
 * a tick is named and marked, and the queue its replicas hold the
 * schedule's state in. A tick is an ordinary request (docs/wire-contract.md)
 * with no `reply_to`; see docs/schedules.md.
 *
 * @module
 */

import { decodeJson } from "./json.ts";
import { CONTENT_TYPE, isPlainObject, type Message } from "./message.ts";
import { NAME_PATTERN } from "./names.ts";

/**
 * The direct exchange ticks go through, routed by the function's queue
 * name. Only the scheduler's broker user (and the administrator) may write
 * to it, and only the queues of scheduled functions are bound to it, so a
 * request that arrives through it was sent by the scheduler: a worker
 * accepts it as the scheduler's, whatever its function's allowed senders.
 */
export const SCHEDULE_EXCHANGE = "tasks.schedule";

/**
 * The scheduler replicas' queue: single active consumer, so the broker
 * picks the one replica that fires, and it holds the one message of the
 * schedule's state (the last tick fired of each function). Reached through
 * {@linkcode SCHEDULE_EXCHANGE} with its own name as routing key.
 */
export const SCHEDULER_QUEUE = "tasks.scheduler";

/**
 * Header of a tick: the time it is for, as ISO 8601 in UTC with
 * milliseconds (`2026-11-29T06:00:00.000Z`). It reaches the handler as
 * `context.tick`.
 */
export const SCHEDULE_TICK_HEADER = "x-schedule-tick";

/**
 * The delivery limit of {@linkcode SCHEDULER_QUEUE} (a quorum queue): as
 * good as none, on RabbitMQ 3 and 4 alike (4 sets 20 by default), so the
 * state a crashing replica returned again and again is never dropped.
 */
export const SCHEDULER_QUEUE_DELIVERY_LIMIT = 2 ** 31;

/** AMQP `type` of the scheduler's state message. */
export const SCHEDULER_STATE_TYPE = "scheduler.state";

/** An instant as a tick names it: ISO 8601, UTC, milliseconds. */
const TICK_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/**
 * The task id of `name`'s tick at `tickMs` (ms since the epoch):
 * `<function>@<tick time>`, such as `report@2026-11-29T06:00:00.000Z`.
 * Every replica names a tick the same, so a tick fired twice in a handover
 * is one task to the workers' record of answers, which runs it once.
 */
export function tickIdOf(name: string, tickMs: number): string {
  if (!NAME_PATTERN.test(name)) {
    throw new TypeError(
      `Cannot name a tick of '${name}' as it is not a function name: use lower_snake_case`,
    );
  }
  return `${name}@${tickTimeOf(tickMs)}`;
}

/** `tickMs` as ticks write it; a `RangeError` for a time `Date` cannot hold. */
export function tickTimeOf(tickMs: number): string {
  if (!Number.isSafeInteger(tickMs) || Math.abs(tickMs) > 8.64e15) {
    throw new RangeError(`Cannot write the tick time ${tickMs}: give whole ms since the epoch`);
  }
  return new Date(tickMs).toISOString();
}

/**
 * The tick time a request's headers carry, as its text, or `null` when it
 * carries none or anything but a valid tick time (which a sender may not
 * pass off as one).
 */
export function tickOf(headers: Record<string, unknown> | undefined): string | null {
  const value = headers?.[SCHEDULE_TICK_HEADER];
  if (typeof value !== "string" || !TICK_TIME.test(value)) return null;
  const ms = Date.parse(value);
  return Number.isFinite(ms) && new Date(ms).toISOString() === value ? value : null;
}

/**
 * AMQP `type` of the note the active scheduler replica publishes to the
 * task events exchange (`tasks.events`) when it becomes active and every
 * {@linkcode SCHEDULER_NOTE_EVERY_MS} while it stays so: how a dashboard
 * learns, with no right on the scheduler queue, which replica fires.
 */
export const SCHEDULER_ACTIVE_TYPE = "scheduler.active";

/** How often the active replica says so, at most. */
export const SCHEDULER_NOTE_EVERY_MS = 10_000;

/** What the note says: which replica fires, since when, the schedules it fires. */
export interface SchedulerNote {
  scheduler: string;
  /** When it became the active replica (ISO 8601). */
  since: string;
  /** The functions it fires the ticks of. */
  functions: string[];
}

const encoder = new TextEncoder();

/** The note, as the active replica publishes it. */
export function encodeSchedulerNote(note: SchedulerNote): Message {
  return {
    body: encoder.encode(JSON.stringify(note)),
    properties: { contentType: CONTENT_TYPE, type: SCHEDULER_ACTIVE_TYPE },
  };
}

/**
 * Reads a note; `undefined` for anything that is not one, within bounds
 * (the events exchange takes messages from many users).
 */
export function parseSchedulerNote(body: Uint8Array): SchedulerNote | undefined {
  const json = decodeJson(body, { what: "a scheduler note", maxBytes: 64 * 1024 });
  if (!json.ok || !isPlainObject(json.value)) return undefined;
  const { scheduler, since, functions } = json.value;
  if (typeof scheduler !== "string" || !/^[\w@.:-]{1,128}$/.test(scheduler)) return undefined;
  if (typeof since !== "string" || !Number.isFinite(Date.parse(since)) || since.length > 40) {
    return undefined;
  }
  if (
    !Array.isArray(functions) || functions.length > 1000 ||
    !functions.every((name) => typeof name === "string" && NAME_PATTERN.test(name))
  ) return undefined;
  return { scheduler, since, functions };
}
