/**
 * A function's schedule, as the registry declares it (`schedule:` in
 * functions/registry.yaml), and the arithmetic of its ticks: when the next
 * one is due, and which ticks missed while no scheduler ran are still fired
 * (the missed-tick policy, docs/schedules.md). Cron patterns are read and
 * stepped by croner (npm:croner), never by hand: seconds are optional, time
 * zones are IANA names, and daylight saving time follows croner (a local
 * time skipped by the clock change runs at the first moment after it, one
 * that occurs twice runs once).
 *
 * @module
 */

import { Cron } from "croner";
import type { Payload } from "./contract/request.ts";

/** A function's schedule, checked, with its defaults applied. */
export interface Schedule {
  /** The cron pattern as written: 5 fields, or 6 with seconds first, or a nickname (`@hourly`). */
  cron: string;
  /** The IANA time zone the pattern is read in. @default {"UTC"} */
  timeZone: string;
  /** The payload each tick carries. @default {{}} */
  payload: Payload;
  /**
   * How late a missed tick may still be fired, in milliseconds: ticks whose
   * time passed while no scheduler ran are fired, in order, when they are at
   * most this old; older ones are skipped. 0 skips every missed tick.
   * @default {DEFAULT_CATCH_UP_MS}
   */
  catchUpMs: number;
}

/** The time zone of a schedule that names none. */
export const DEFAULT_TIME_ZONE = "UTC";

/** How late a missed tick is still fired unless the schedule says otherwise: a minute. */
export const DEFAULT_CATCH_UP_MS = 60_000;

/** The longest catch-up window a schedule may ask for: a day. */
export const MAX_CATCH_UP_MS = 86_400_000;

/**
 * A tick fired this late is on time, whatever the catch-up window: a timer
 * that wakes a little late, or a handover between scheduler replicas, does
 * not make a tick missed.
 */
export const ON_TIME_MS = 5_000;

/** The largest payload a schedule may carry, as JSON. */
export const MAX_SCHEDULE_PAYLOAD_BYTES = 64 * 1024;

/** The keys of a schedule's mapping in the registry. */
export const SCHEDULE_KEYS: readonly string[] = ["cron", "time_zone", "payload", "catch_up"];

/** A schedule as read: its value, or what is wrong (`at` names the key of the mapping). */
export type ScheduleRead = { value: Schedule } | { problem: string; at?: string };

const ZONE_TEXT = /^[A-Za-z][A-Za-z0-9_+-]*(\/[A-Za-z0-9_+-]+){0,2}$/;
const DURATION = /^(\d{1,9})(s|m|h|d)$/;
const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** A cron pattern in a time zone, as croner steps it; throws croner's error for a bad one. */
function cronOf(pattern: string, timeZone: string): Cron {
  // Paused and without a callback: croner only computes, it starts no timer.
  return new Cron(pattern, { timezone: timeZone, paused: true, mode: "5-or-6-parts" });
}

function readCron(value: unknown, timeZone: string): { cron: string } | { problem: string } {
  if (typeof value !== "string" || value.trim() === "" || value.length > 200) {
    return {
      problem: `must be a cron pattern of at most 200 characters, such as "0 */5 * * * *", but is ${
        describe(value)
      }`,
    };
  }
  let next: Date | null;
  try {
    next = cronOf(value, timeZone).nextRun();
  } catch (error) {
    const reason = String((error as Error)?.message ?? error).replace(/^Cron\w*:\s*/, "");
    return {
      problem: `'${value}' is not a cron pattern (${
        reason.slice(0, 200)
      }): use 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first, such as "0 */5 * * * *"`,
    };
  }
  if (next === null) {
    return { problem: `'${value}' never fires: give a pattern with a time that exists` };
  }
  return { cron: value };
}

function readTimeZone(value: unknown): { timeZone: string } | { problem: string } {
  const fix = "give an IANA time zone name, such as Europe/Berlin or UTC";
  if (typeof value !== "string" || !ZONE_TEXT.test(value) || value.length > 64) {
    return { problem: `must be a time zone name, but is ${describe(value)}: ${fix}` };
  }
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: value });
  } catch {
    return { problem: `'${value}' is not a time zone this system knows: ${fix}` };
  }
  return { timeZone: value };
}

/** A duration as the registry writes it: `0`, or a whole number of `s`, `m`, `h` or `d`. */
export function parseDuration(value: unknown): number | undefined {
  if (value === 0 || value === "0") return 0;
  if (typeof value !== "string") return undefined;
  const match = value.match(DURATION);
  return match ? Number(match[1]) * UNIT_MS[match[2]] : undefined;
}

function readCatchUp(value: unknown): { catchUpMs: number } | { problem: string } {
  const ms = parseDuration(value);
  if (ms === undefined || ms > MAX_CATCH_UP_MS) {
    return {
      problem:
        `must be 0 (skip every missed tick) or a duration of at most 1d, such as 30s, 10m or 2h, but is ${
          describe(value)
        }`,
    };
  }
  return { catchUpMs: ms };
}

function readPayload(value: unknown): { payload: Payload } | { problem: string } {
  const fix = "give a mapping, such as { report: daily }";
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return { problem: `must be a mapping, but is ${describe(value)}: ${fix}` };
  }
  let json: string;
  try {
    json = JSON.stringify(value);
  } catch {
    return { problem: `cannot be written as JSON: ${fix}` };
  }
  if (new TextEncoder().encode(json).byteLength > MAX_SCHEDULE_PAYLOAD_BYTES) {
    return {
      problem:
        `takes more than ${MAX_SCHEDULE_PAYLOAD_BYTES} bytes as JSON: keep it small, and let the function read the rest elsewhere`,
    };
  }
  return { payload: JSON.parse(json) };
}

function describe(value: unknown): string {
  if (value === undefined) return "missing";
  if (value === null) return "empty";
  if (typeof value === "string") return `'${value.slice(0, 80)}'`;
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a mapping";
  return String(value);
}

/**
 * Reads a registry entry's `schedule:`: a cron pattern alone, or a mapping
 * of `cron`, `time_zone`, `payload` and `catch_up`. Never throws; a problem
 * names the key it is at (`at`) and the fix.
 */
export function parseSchedule(value: unknown): ScheduleRead {
  const settings = typeof value === "string" ? { cron: value } : value;
  if (typeof settings !== "object" || settings === null || Array.isArray(settings)) {
    return {
      problem: `must be a cron pattern or a mapping of ${SCHEDULE_KEYS.join(", ")}, but is ${
        describe(value)
      }`,
    };
  }
  const fields = settings as Record<string, unknown>;
  for (const key of Object.keys(fields)) {
    if (!SCHEDULE_KEYS.includes(key)) {
      return { at: key, problem: `is not a schedule setting: use ${SCHEDULE_KEYS.join(", ")}` };
    }
  }
  if (fields.cron === undefined) {
    return { problem: `has no 'cron': give a pattern, such as cron: "0 0 3 * * *"` };
  }
  const zone = fields.time_zone === undefined
    ? { timeZone: DEFAULT_TIME_ZONE }
    : readTimeZone(fields.time_zone);
  if ("problem" in zone) return { at: "time_zone", problem: zone.problem };
  const cron = readCron(fields.cron, zone.timeZone);
  if ("problem" in cron) return { at: "cron", problem: cron.problem };
  const payload = fields.payload === undefined ? { payload: {} } : readPayload(fields.payload);
  if ("problem" in payload) return { at: "payload", problem: payload.problem };
  const catchUp = fields.catch_up === undefined
    ? { catchUpMs: DEFAULT_CATCH_UP_MS }
    : readCatchUp(fields.catch_up);
  if ("problem" in catchUp) return { at: "catch_up", problem: catchUp.problem };
  return {
    value: {
      cron: cron.cron,
      timeZone: zone.timeZone,
      payload: payload.payload,
      catchUpMs: catchUp.catchUpMs,
    },
  };
}

/** A schedule as people read it: `0 0 3 * * * (Europe/Berlin)`. */
export function describeSchedule(schedule: Schedule): string {
  return `${schedule.cron} (${schedule.timeZone})`;
}

/** Which ticks to fire now, and the range of missed ones skipped, if any. */
export interface DueTicks {
  /** Tick times to fire, oldest first, ms since the epoch. */
  fire: number[];
  /** The missed ticks skipped as older than the catch-up window: from the first to before `until`. */
  skipped?: { from: number; until: number };
}

/** Steps one schedule's ticks; made once per schedule, as croner compiles the pattern. */
export class TickClock {
  readonly schedule: Schedule;
  readonly #cron: Cron;

  /** @param schedule A schedule {@linkcode parseSchedule} accepted. */
  constructor(schedule: Schedule) {
    this.schedule = schedule;
    this.#cron = cronOf(schedule.cron, schedule.timeZone);
  }

  /** The first tick strictly after `afterMs`, or `null` when there is none. */
  next(afterMs: number): number | null {
    return this.#cron.nextRun(new Date(afterMs))?.getTime() ?? null;
  }

  /**
   * The ticks due at `nowMs` after the last one fired, `lastMs`: each tick
   * from `lastMs` (excluded) to `nowMs` (included), oldest first, at most
   * `max` of them (call again from the last one for more). The missed-tick
   * policy: a tick older than the catch-up window (or than
   * {@linkcode ON_TIME_MS}, if longer) is skipped, and reported.
   */
  due(lastMs: number, nowMs: number, max = 1000): DueTicks {
    const window = Math.max(this.schedule.catchUpMs, ON_TIME_MS);
    const cutoff = nowMs - window;
    const first = this.next(lastMs);
    const result: DueTicks = { fire: [] };
    if (first === null || first > nowMs) return result;
    let tick: number | null = first;
    if (first < cutoff) {
      // Found without stepping through them: a year of per-second ticks
      // skips as fast as one.
      result.skipped = { from: first, until: cutoff };
      tick = this.next(cutoff - 1);
    }
    while (tick !== null && tick <= nowMs && result.fire.length < max) {
      result.fire.push(tick);
      tick = this.next(tick);
    }
    return result;
  }
}
