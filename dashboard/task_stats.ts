/**
 * Throughput and latency of each function over the last minutes, from task
 * events: finished tasks (succeeded, failed, rejected) counted in 10-second
 * buckets, with their run times (`duration_ms`, the worker's) and, where the
 * caller's `task-sent` was seen too, the time from sending to the end.
 * Bounded: old buckets go, and so do sent times of tasks that never end:
 * those seen longer ago than the window, and, past
 * {@linkcode MAX_OPEN_TASKS}, the oldest, so that a flood of sends that
 * never finish neither grows the memory nor keeps new tasks out of the
 * figures once it stops.
 *
 * @module
 */

import type { TaskEvent } from "../core/contract/mod.ts";

/** Width of a bucket. */
export const BUCKET_MS = 10_000;
/** Buckets kept: five minutes. */
export const BUCKETS = 30;
/** Sent times remembered, waiting for their task's end. */
export const MAX_OPEN_TASKS = 10_000;
/** Run times kept per bucket for percentiles. */
const MAX_SAMPLES = 2_000;

interface Bucket {
  /** Start of the bucket, in ms since the epoch, a multiple of BUCKET_MS. */
  start: number;
  sent: number;
  succeeded: number;
  failed: number;
  retried: number;
  /** Of the failed: calls cancelled (dead-letter reason `cancelled`). */
  cancelled: number;
  runMs: number[];
  endToEndMs: number[];
}

/** One function's figures, as the page draws them. */
export interface FunctionFigures {
  /** Finished tasks per second over the last minute. */
  perSecond: number;
  /** Over the last minute. */
  succeeded: number;
  failed: number;
  retried: number;
  /** Calls cancelled over the last minute (counted among the failed too). */
  cancelled: number;
  sent: number;
  /** Run time percentiles over the whole window, ms; `null` with no task. */
  runP50: number | null;
  runP95: number | null;
  /** From task-sent to the end, over the whole window, ms; `null` when no sent event was seen. */
  endToEndP50: number | null;
  endToEndP95: number | null;
  /** Finished tasks per bucket, oldest first, for a sparkline (one per 10 s). */
  series: number[];
  /** Failed tasks per bucket, oldest first. */
  failedSeries: number[];
}

/** The `q` quantile (0..1) of `values`, by nearest rank; `null` when empty. */
export function quantile(values: number[], q: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return Math.round(sorted[rank] * 10) / 10;
}

/** Rolling figures of every function; see the module documentation. */
export class TaskStats {
  readonly #buckets = new Map<string, Bucket[]>();
  /** Sent times by task, in the order they were seen (a Map keeps it). */
  readonly #sentAt = new Map<string, { at: number; seen: number }>();

  /** Sent times waiting for their task's end. */
  get openTasks(): number {
    return this.#sentAt.size;
  }

  /** Characters of the keys of those sent times (function and task id). */
  get openTaskChars(): number {
    let chars = 0;
    for (const key of this.#sentAt.keys()) chars += key.length;
    return chars;
  }

  /** Counts one event at its own time (`at`), or now when that is unreadable. */
  add(event: TaskEvent, now = Date.now()): void {
    const parsed = Date.parse(event.at);
    // A clock far off (or a forged time) must not leave the window empty or stretch it.
    const at = Number.isFinite(parsed) && Math.abs(parsed - now) < BUCKETS * BUCKET_MS
      ? parsed
      : now;
    const bucket = this.#bucketOf(event.function, at, now);
    const key = event.task_id === null ? undefined : `${event.function}\u0000${event.task_id}`;
    switch (event.kind) {
      case "task-sent":
        bucket.sent++;
        if (key !== undefined) this.#remember(key, at, now);
        return;
      case "task-retried":
        bucket.retried++;
        return;
      case "task-succeeded":
      case "task-failed":
      case "task-rejected": {
        if (event.kind === "task-succeeded") bucket.succeeded++;
        else bucket.failed++;
        if (event.reason === "cancelled") bucket.cancelled++;
        if (typeof event.duration_ms === "number" && bucket.runMs.length < MAX_SAMPLES) {
          bucket.runMs.push(event.duration_ms);
        }
        const sent = key === undefined ? undefined : this.#sentAt.get(key);
        if (sent !== undefined) {
          this.#sentAt.delete(key!);
          const inWindow = sent.seen >= now - BUCKETS * BUCKET_MS;
          if (inWindow && bucket.endToEndMs.length < MAX_SAMPLES) {
            bucket.endToEndMs.push(at - sent.at);
          }
        }
        return;
      }
    }
  }

  /** The figures of `fn` at `now`. */
  figures(fn: string, now = Date.now()): FunctionFigures {
    const current = Math.floor(now / BUCKET_MS) * BUCKET_MS;
    const oldest = current - (BUCKETS - 1) * BUCKET_MS;
    const kept = (this.#buckets.get(fn) ?? []).filter((b) => b.start >= oldest);
    const minuteAgo = now - 60_000;
    const lastMinute = kept.filter((b) => b.start + BUCKET_MS > minuteAgo);
    const sum = (list: Bucket[], pick: (b: Bucket) => number) =>
      list.reduce((total, b) => total + pick(b), 0);
    const succeeded = sum(lastMinute, (b) => b.succeeded);
    const failed = sum(lastMinute, (b) => b.failed);
    const run = kept.flatMap((b) => b.runMs);
    const endToEnd = kept.flatMap((b) => b.endToEndMs);
    const series: number[] = [];
    const failedSeries: number[] = [];
    for (let start = oldest; start <= current; start += BUCKET_MS) {
      const bucket = kept.find((b) => b.start === start);
      series.push(bucket ? bucket.succeeded + bucket.failed : 0);
      failedSeries.push(bucket?.failed ?? 0);
    }
    return {
      perSecond: Math.round(((succeeded + failed) / 60) * 100) / 100,
      succeeded,
      failed,
      retried: sum(lastMinute, (b) => b.retried),
      cancelled: sum(lastMinute, (b) => b.cancelled),
      sent: sum(lastMinute, (b) => b.sent),
      runP50: quantile(run, 0.5),
      runP95: quantile(run, 0.95),
      endToEndP50: quantile(endToEnd, 0.5),
      endToEndP95: quantile(endToEnd, 0.95),
      series,
      failedSeries,
    };
  }

  #bucketOf(fn: string, at: number, now: number): Bucket {
    const start = Math.floor(at / BUCKET_MS) * BUCKET_MS;
    let list = this.#buckets.get(fn);
    if (!list) this.#buckets.set(fn, list = []);
    let bucket = list.find((b) => b.start === start);
    if (!bucket) {
      bucket = {
        start,
        sent: 0,
        succeeded: 0,
        failed: 0,
        retried: 0,
        cancelled: 0,
        runMs: [],
        endToEndMs: [],
      };
      list.push(bucket);
      const oldest = Math.floor(now / BUCKET_MS) * BUCKET_MS - BUCKETS * BUCKET_MS;
      this.#buckets.set(fn, list.filter((b) => b.start > oldest));
    }
    return bucket;
  }

  /**
   * Remembers when `key` was sent. Sent times seen longer ago than the
   * window belong to tasks whose end was never seen; they, and past the cap
   * the oldest, are forgotten from the front of the map (seen in order), so
   * each call does constant work on average.
   */
  #remember(key: string, at: number, now: number): void {
    const oldest = now - BUCKETS * BUCKET_MS;
    for (const [old, sent] of this.#sentAt) {
      if (sent.seen >= oldest && this.#sentAt.size < MAX_OPEN_TASKS) break;
      this.#sentAt.delete(old);
    }
    // A repeated id moves to the back, as it was seen now.
    this.#sentAt.delete(key);
    this.#sentAt.set(key, { at, seen: now });
  }
}
