/**
 * The schedule's state, the one thing that survives a handover between
 * scheduler replicas: for each function, the time of the last tick fired.
 * It lives in one message of the scheduler queue, which the active replica
 * holds unacknowledged and republishes as ticks go out (docs/schedules.md).
 * Merging takes the later tick of each function, so copies of the state
 * left by a replica that died mid-handover are merged, never lost, and the
 * order they arrive in does not matter.
 *
 * Everything read from the queue is checked: its sender must be the
 * scheduler's own broker user (RabbitMQ verifies `user_id`), and its body a
 * bounded state whose ticks are not far in the future.
 *
 * @module
 */

import type { Delivery } from "../core/broker/mod.ts";
import {
  CONTENT_TYPE,
  decodeJson,
  isPlainObject,
  type Message,
  NAME_PATTERN,
  SCHEDULER_STATE_TYPE,
} from "../core/contract/mod.ts";

/** Last tick fired (ms since the epoch), by function. */
export type TickState = Map<string, number>;

/** The largest state message read, in bytes. */
export const MAX_STATE_BYTES = 1024 * 1024;

/** The most functions a state may name. */
export const MAX_STATE_FUNCTIONS = 10_000;

/**
 * How far ahead of this replica's clock a tick in the state may be: a
 * replica whose clock runs ahead fires early, and its state may say so;
 * anything further is refused, so that no state can silence a schedule.
 */
export const MAX_STATE_AHEAD_MS = 3_600_000;

const VERSION = 1;
const encoder = new TextEncoder();

/** The state message: who wrote it (`by`), when, and the ticks. */
export function encodeState(ticks: TickState, by: string, now: number): Message {
  const body = {
    v: VERSION,
    by,
    at: now,
    ticks: Object.fromEntries([...ticks].sort(([a], [b]) => a.localeCompare(b))),
  };
  return {
    body: encoder.encode(JSON.stringify(body)),
    properties: { contentType: CONTENT_TYPE, type: SCHEDULER_STATE_TYPE, persistent: true },
  };
}

/** What a message of the scheduler queue holds: a state, or why it is none. */
export type ReadState = { ok: true; ticks: TickState; by: string | null } | {
  ok: false;
  reason: string;
};

/** Options for {@linkcode decodeState}. */
export interface DecodeStateOptions {
  /** The scheduler's broker user, the only sender whose state counts. */
  user: string;
  /** This replica's clock. */
  now: number;
}

/** Reads a message of the scheduler queue; never throws. */
export function decodeState(delivery: Delivery, options: DecodeStateOptions): ReadState {
  const { userId, type } = delivery.properties;
  if (userId !== options.user) {
    return {
      ok: false,
      reason: `its user_id is ${
        userId === undefined ? "missing" : `'${String(userId).slice(0, 64)}'`
      }, not the scheduler's '${options.user}'`,
    };
  }
  if (type !== SCHEDULER_STATE_TYPE) {
    return { ok: false, reason: `its type is not '${SCHEDULER_STATE_TYPE}'` };
  }
  const json = decodeJson(delivery.body, { what: "the state", maxBytes: MAX_STATE_BYTES });
  if (!json.ok) return { ok: false, reason: json.error.message };
  const body = json.value;
  if (!isPlainObject(body) || body.v !== VERSION || !isPlainObject(body.ticks)) {
    return { ok: false, reason: `it is not a version ${VERSION} state: {"v": 1, "ticks": {...}}` };
  }
  const entries = Object.entries(body.ticks);
  if (entries.length > MAX_STATE_FUNCTIONS) {
    return { ok: false, reason: `it names more than ${MAX_STATE_FUNCTIONS} functions` };
  }
  const ticks: TickState = new Map();
  for (const [name, tick] of entries) {
    if (!NAME_PATTERN.test(name)) {
      return { ok: false, reason: `'${name.slice(0, 64)}' is not a function name` };
    }
    if (typeof tick !== "number" || !Number.isSafeInteger(tick) || tick <= 0) {
      return { ok: false, reason: `the tick of ${name} is not a time` };
    }
    if (tick > options.now + MAX_STATE_AHEAD_MS) {
      return {
        ok: false,
        reason: `the tick of ${name}, ${
          new Date(tick).toISOString()
        }, is more than an hour ahead of this replica's clock`,
      };
    }
    ticks.set(name, tick);
  }
  const by = typeof body.by === "string" ? body.by.slice(0, 128) : null;
  return { ok: true, ticks, by };
}

/** Takes the later tick of each function of `from` into `into`; true when `into` changed. */
export function mergeState(into: TickState, from: TickState): boolean {
  let changed = false;
  for (const [name, tick] of from) {
    const mine = into.get(name);
    if (mine !== undefined && mine >= tick) continue;
    if (mine === undefined && into.size >= MAX_STATE_FUNCTIONS) continue;
    into.set(name, tick);
    changed = true;
  }
  return changed;
}
