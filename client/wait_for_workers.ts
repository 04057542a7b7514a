/**
 * Checks, before dispatching, that every queue of a scenario has a worker
 * consuming it. Workers that are starting get a few seconds; a missing one
 * is reported by name, with how to start it, instead of tasks timing out.
 *
 * @module
 */

import type { Broker } from "../core/broker/broker.ts";

/** A function the run needs, and its queue. */
export interface NeededWorker {
  /** The function's name. */
  task: string;
  /** The queue a worker of it must consume. */
  queue: string;
  /** `celery` when Celery workers serve it. @default {"native"} */
  protocol?: "native" | "celery";
}

/** Options for {@linkcode waitForWorkers}. */
export interface WaitForWorkersOptions {
  /** Give up after this long. */
  timeoutMs: number;
  /**
   * Time between checks.
   * @default {250}
   */
  intervalMs?: number;
  /** Told once which functions are still missing when the first check fails. */
  onWaiting?: (missing: NeededWorker[]) => void;
}

/** Some queue of the run has no consumer. */
export class WorkersMissingError extends Error {
  /** The functions without a worker. */
  readonly missing: NeededWorker[];

  /**
   * Names each function in `missing`, with how to start its worker.
   *
   * @param missing The functions without a worker.
   * @param waitedMs How long it waited.
   */
  constructor(missing: NeededWorker[], waitedMs: number) {
    const lines = missing.map(({ task, queue, protocol }) =>
      protocol === "celery"
        ? `  ${task}: no Celery worker consumes '${queue}'. Start one: 'docker compose --profile celery up -d --build', or 'celery -A <app> worker -Q ${queue}'`
        : `  ${task}: no worker consumes '${queue}'. Start one: 'docker compose up -d --build' (all workers) or 'deno task worker ${task}'`
    );
    super(
      `Cannot dispatch as ${
        missing.length === 1 ? "a function has" : "functions have"
      } no worker after ${(waitedMs / 1000).toFixed(1)} s:\n${
        lines.join("\n")
      }\nOr run everything in-process with --local.`,
    );
    this.name = "WorkersMissingError";
    this.missing = missing;
  }
}

/** Resolves with each queue's consumer count once all have one; else throws. */
export async function waitForWorkers(
  broker: Broker,
  needed: NeededWorker[],
  options: WaitForWorkersOptions,
): Promise<Map<string, number>> {
  const started = Date.now();
  let told = false;
  while (true) {
    const consumers = new Map<string, number>();
    const missing: NeededWorker[] = [];
    for (const worker of needed) {
      const info = await broker.inspectQueue(worker.queue);
      consumers.set(worker.queue, info?.consumers ?? 0);
      if (!info || info.consumers === 0) missing.push(worker);
    }
    if (missing.length === 0) return consumers;
    const waited = Date.now() - started;
    if (waited >= options.timeoutMs) throw new WorkersMissingError(missing, waited);
    if (!told) {
      options.onWaiting?.(missing);
      told = true;
    }
    await new Promise((resolve) =>
      setTimeout(resolve, Math.min(options.intervalMs ?? 250, options.timeoutMs - waited))
    );
  }
}
