/**
 * The load tester's engine: keeps `concurrency` calls in flight (or starts
 * `rate` calls per second) until `tasks` have ended, and measures
 * throughput, latency percentiles, errors, retries and the work each worker
 * did.
 *
 * @module
 */

import type { Payload } from "../core/contract/mod.ts";
import type { CallOutcome } from "../client/mod.ts";
import type { TaskClient } from "../client/task_client.ts";

/** Options for {@linkcode runLoad}. */
export interface LoadOptions {
  tasks: number;
  /** Calls in flight at once (closed loop). Ignored when `rate` is set. */
  concurrency: number;
  /** Calls started per second (open loop). */
  rate?: number;
  /** Functions called in turn, by name. */
  targets: string[];
  payload: Payload;
  timeoutMs: number;
  /** Told of progress about every `progressMs`. */
  onProgress?: (progress: LoadProgress) => void;
  /** @default {250} */
  progressMs?: number;
}

/** Where a run is. */
export interface LoadProgress {
  sent: number;
  done: number;
  errors: number;
  elapsedMs: number;
}

/** Latency figures in milliseconds. */
export interface Latency {
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

/** The figures of a finished run. */
export interface LoadResult {
  tasks: number;
  succeeded: number;
  /** Error replies, by error type. */
  errors: Record<string, number>;
  timeouts: number;
  retries: number;
  durationMs: number;
  throughput: number;
  latencyMs: Latency;
  /** Tasks answered by each worker id. */
  perWorker: Record<string, number>;
  /**
   * The longest time between two calls ending one after the other, in ms:
   * the pause a run saw, such as while a broker node was lost.
   */
  longestGapMs: number;
}

/** The value below which `fraction` of the sorted `values` lie (nearest rank). */
export function percentile(sorted: ArrayLike<number>, fraction: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.ceil(fraction * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

function round(value: number): number {
  return Math.round(value * 100) / 100;
}

/** Computes latency figures from unsorted samples. */
export function latencyOf(samples: ArrayLike<number>): Latency {
  const sorted = Float64Array.from(samples).sort();
  const mean = sorted.reduce((sum, v) => sum + v, 0) / (sorted.length || 1);
  return {
    p50: round(percentile(sorted, 0.5)),
    p90: round(percentile(sorted, 0.9)),
    p99: round(percentile(sorted, 0.99)),
    max: round(sorted.at(-1) ?? 0),
    mean: round(mean),
  };
}

/** Runs a load test over `client`; rejects only if the broker fails. */
export async function runLoad(
  client: Pick<TaskClient, "request">,
  options: LoadOptions,
): Promise<LoadResult> {
  // A number per task, not an object: a million tasks take 8 MB here.
  const latencies = new Float64Array(options.tasks);
  const perWorker: Record<string, number> = {};
  const errors: Record<string, number> = {};
  let timeouts = 0;
  let retries = 0;
  let succeeded = 0;
  let sent = 0;
  let done = 0;
  const started = performance.now();
  const progress = () =>
    options.onProgress?.({
      sent,
      done,
      errors: done - succeeded,
      elapsedMs: performance.now() - started,
    });
  const ticker = options.onProgress ? setInterval(progress, options.progressMs ?? 250) : undefined;

  let lastEnd: number | undefined;
  let longestGapMs = 0;
  const record = (outcome: CallOutcome) => {
    done++;
    if (lastEnd !== undefined) longestGapMs = Math.max(longestGapMs, outcome.endedAt - lastEnd);
    lastEnd = Math.max(lastEnd ?? 0, outcome.endedAt);
    latencies[done - 1] = outcome.endedAt - outcome.sentAt;
    if (outcome.kind === "timeout") {
      timeouts++;
      return;
    }
    const { reply } = outcome;
    perWorker[reply.worker] = (perWorker[reply.worker] ?? 0) + 1;
    retries += Math.max(0, reply.attempts - 1);
    if (reply.status === "success") succeeded++;
    else {
      const type = reply.error?.type ?? "Error";
      errors[type] = (errors[type] ?? 0) + 1;
    }
  };
  const callNext = () => {
    const target = options.targets[sent % options.targets.length];
    sent++;
    return client.request(target, options.payload, { timeoutMs: options.timeoutMs }).then(record);
  };

  try {
    if (options.rate !== undefined) {
      // Counted, not kept: a million calls are never a million promises at once.
      let ended = 0;
      let failure: { error: unknown } | undefined;
      let allEnded!: () => void;
      const finished = new Promise<void>((resolve) => allEnded = resolve);
      const intervalMs = 1000 / options.rate;
      while (sent < options.tasks && failure === undefined) {
        // Catch up on the schedule, so that timer delays do not lower the rate.
        const due = Math.min(
          options.tasks,
          Math.floor((performance.now() - started) / intervalMs) + 1,
        );
        while (sent < due) {
          callNext().catch((error) => void (failure ??= { error })).finally(() => {
            if (++ended === sent && (sent === options.tasks || failure)) allEnded();
          });
        }
        if (sent < options.tasks) await new Promise((resolve) => setTimeout(resolve, intervalMs));
      }
      await finished;
      if (failure !== undefined) throw failure.error;
    } else {
      const lane = async () => {
        while (sent < options.tasks) await callNext();
      };
      const lanes = Math.max(1, Math.min(options.concurrency, options.tasks));
      await Promise.all(Array.from({ length: lanes }, lane));
    }
  } finally {
    clearInterval(ticker);
  }
  progress();
  const durationMs = performance.now() - started;
  return {
    tasks: options.tasks,
    succeeded,
    errors,
    timeouts,
    retries,
    durationMs: round(durationMs),
    throughput: round(options.tasks / (durationMs / 1000)),
    latencyMs: latencyOf(latencies.subarray(0, done)),
    perWorker,
    longestGapMs: round(longestGapMs),
  };
}
