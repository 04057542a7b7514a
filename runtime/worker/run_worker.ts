/**
 * Runs a worker for as long as it is wanted: connects (retrying with
 * backoff), consumes through {@linkcode startWorker}, reconnects after a lost
 * connection, and on a stop signal drains within a grace period and closes.
 *
 * @module
 */

import { backoffDelay, RECONNECT_POLICY } from "../../core/backoff.ts";
import {
  type Broker,
  BrokerUnavailableError,
  QueueMismatchError,
} from "../../core/broker/broker.ts";
import { type Logger, SILENT_LOGGER } from "../../core/log.ts";
import { AnsweredTasks } from "./answered_tasks.ts";
import { WorkerMetrics } from "./observe.ts";
import type { HandlerRunner } from "./runner.ts";
import { type RunningWorker, startWorker, type WorkerOptions } from "./consumer.ts";

/** Options for {@linkcode runWorker}. */
export interface RunWorkerOptions extends WorkerOptions {
  /** Opens a broker connection; called again after each loss. */
  connect: () => Promise<Broker>;
  /** A connection already open, used first. */
  initial?: Broker;
  /** Aborting it stops the worker gracefully. */
  signal: AbortSignal;
  /**
   * How long running handlers may take to finish after a stop.
   * @default {10_000}
   */
  graceMs?: number;
  /** Told each time the worker starts or stops consuming. */
  onConsuming?: (consuming: boolean, worker: RunningWorker | undefined) => void;
}

export { RECONNECT_POLICY };

/** Waits `ms`, or less if `signal` aborts first; never rejects. */
export function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

/**
 * After a failed connection: rethrows what is not an unreachable broker,
 * else logs it and waits the backoff of the `failures`th attempt (less when
 * `signal` aborts).
 */
export async function waitToReconnect(
  error: unknown,
  failures: number,
  log: Logger,
  signal: AbortSignal,
): Promise<void> {
  if (!(error instanceof BrokerUnavailableError)) throw error;
  const delay = backoffDelay(failures, RECONNECT_POLICY);
  log.warn("Broker not reachable; retrying", {
    attempt: failures,
    retry_in_ms: delay,
    error: error.message,
  });
  await pause(delay, signal);
}

/**
 * Runs a function as a worker until `signal` is aborted: connects (retrying
 * with backoff, one log line per attempt), consumes, reconnects after a lost
 * connection, and on abort drains within the grace period and closes.
 * Rejects only for a fault no reconnection can fix, such as a queue that
 * exists with other settings.
 */
export async function runWorker(
  runner: HandlerRunner,
  options: RunWorkerOptions,
): Promise<void> {
  const { signal } = options;
  const queue = options.queue ?? runner.info.queue;
  const log = (options.log ?? SILENT_LOGGER).child({
    function: runner.info.name,
    queue,
    worker: options.workerId,
  });
  let initial = options.initial;
  const connect = () => {
    const first = initial;
    initial = undefined;
    return first ? Promise.resolve(first) : options.connect();
  };
  // One set of counters for the life of the process, whatever the reconnections.
  const metrics = options.metrics ?? new WorkerMetrics();
  // And one record of answered tasks: a request the broker delivers again
  // after a reconnection is answered from it, not run twice.
  const answered = options.answered ?? new AnsweredTasks();
  let failures = 0;
  while (!signal.aborted) {
    let broker: Broker;
    try {
      broker = await connect();
    } catch (error) {
      await waitToReconnect(error, ++failures, log, signal);
      continue;
    }
    let worker: RunningWorker;
    try {
      worker = await startWorker(runner, broker, { ...options, metrics, answered });
    } catch (error) {
      await broker.close();
      if (error instanceof QueueMismatchError) throw explainMismatch(error, options);
      if (!(error instanceof BrokerUnavailableError)) throw error;
      failures++;
      log.warn("Could not start consuming; retrying", { attempt: failures, error: error.message });
      await pause(backoffDelay(failures, RECONNECT_POLICY), signal);
      continue;
    }
    failures = 0;
    log.info("Consuming", {
      prefetch: options.prefetch ?? options.concurrency ?? 1,
      concurrency: options.concurrency ?? 1,
    });
    options.onConsuming?.(true, worker);
    const stopped = new Promise<"stop">((resolve) => {
      if (signal.aborted) resolve("stop");
      signal.addEventListener("abort", () => resolve("stop"), { once: true });
    });
    const outcome = await Promise.race([broker.closed, stopped]);
    options.onConsuming?.(false, worker);
    if (outcome === "stop") {
      log.info("Stopping: finishing tasks in flight", { in_flight: worker.stats.inFlight });
      await worker.stop(options.graceMs ?? 10_000);
      await broker.close();
      log.info("Stopped", { ...worker.stats });
      return;
    }
    worker.abandon();
    failures = 1;
    log.warn("Lost the broker connection; reconnecting", {
      error: outcome?.message ?? "closed",
    });
    await pause(backoffDelay(failures, RECONNECT_POLICY), signal);
  }
  log.info("Stopped while not connected");
}

/** A queue that exists with other settings, said in the worker's own terms. */
function explainMismatch(error: QueueMismatchError, options: WorkerOptions): Error {
  const type = (value: string) => value === "none" ? "classic" : value.replaceAll("'", "");
  if (error.argument === "x-queue-type") {
    const wanted = options.queueType ?? "quorum";
    return new QueueMismatchError(
      `Cannot consume queue '${error.queue}' as it exists as a ${
        type(error.current)
      } queue and this worker uses ${wanted} queues (QUEUE_TYPE=${wanted}): set QUEUE_TYPE=${
        type(error.current)
      } to keep using it, or migrate it to ${wanted} (docs/operations.md, "Changing a queue's type or limits")`,
      error,
      { cause: error },
    );
  }
  return new QueueMismatchError(
    `Cannot consume queue '${error.queue}' as it was declared with other arguments (${error.argument}: ${error.current}, where this worker declares ${error.wanted}), by another DELIVERY_LIMIT or a version without dead-letter targets on its queues: migrate it (docs/operations.md, "Changing a queue's type or limits")`,
    error,
    { cause: error },
  );
}
