/**
 * The events figure of `deno task bench`: events emitted to three
 * subscribed functions (host worker processes of task_a, each on a queue of
 * its own bound with the same trigger), their runs counted by event id from
 * the workers' side, from their "Task succeeded" lines. Runs per second are
 * from the first emit to the last run; none may be lost or run twice.
 *
 * @module
 */

import type { Broker } from "../core/broker/mod.ts";
import { retryQueuesOf } from "../core/contract/mod.ts";
import { emitEvent } from "../client/emit.ts";
import { CONSUMING, type RunningProcess, startDeno, workerArgs } from "./processes.ts";

/** What {@linkcode measureEvents} found. */
export interface EventFigures {
  events: number;
  functions: number;
  runs: number;
  seconds: number;
  runsPerSecond: number;
  eventsPerSecond: number;
  /** Runs expected and never seen. */
  lost: number;
  /** Runs seen more than once for one event and function. */
  twice: number;
}

/** Options for {@linkcode measureEvents}. */
export interface MeasureEventsOptions {
  url: string;
  admin: Broker;
  quick: boolean;
  say: (line: string) => void;
}

const FUNCTIONS = 3;
const SUCCEEDED = /"msg":"Task succeeded"/;

/** Runs the measurement; see the module documentation. */
export async function measureEvents(options: MeasureEventsOptions): Promise<EventFigures> {
  const { url, admin, say } = options;
  const count = options.quick ? 300 : 5_000;
  const run = crypto.randomUUID().slice(0, 8);
  const type = `bench.t${run}.tick`;
  const queues = Array.from({ length: FUNCTIONS }, (_, i) => `bench_events${i}_${run}`);
  const workers: RunningProcess[] = [];
  say(`Events: ${count} to ${FUNCTIONS} functions...`);
  try {
    for (const queue of queues) {
      workers.push(startDeno(workerArgs("task_a"), {
        AMQP_URL: url,
        METRICS_PORT: "0",
        QUEUE: queue,
        FUNCTION_TRIGGERS: type,
        CONCURRENCY: "64",
      }));
    }
    for (const worker of workers) await worker.waitForLine(CONSUMING, 30_000);
    const started = performance.now();
    for (let first = 0; first < count; first += 500) {
      const batch = Array.from(
        { length: Math.min(500, count - first) },
        () => emitEvent(admin, type, { work_ms: 0 }),
      );
      await Promise.all(batch);
    }
    const emittedMs = performance.now() - started;
    const seen = () =>
      workers.reduce((sum, w) => sum + w.lines.filter((l) => SUCCEEDED.test(l)).length, 0);
    const deadline = Date.now() + (options.quick ? 60_000 : 300_000);
    while (seen() < count * FUNCTIONS && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const seconds = (performance.now() - started) / 1000;
    let runs = 0;
    let lost = 0;
    let twice = 0;
    for (const worker of workers) {
      const byId = new Map<string, number>();
      for (const line of worker.lines) {
        if (!SUCCEEDED.test(line)) continue;
        const id = String(JSON.parse(line).task_id);
        byId.set(id, (byId.get(id) ?? 0) + 1);
        runs++;
      }
      lost += count - byId.size;
      twice += [...byId.values()].filter((n) => n > 1).length;
    }
    return {
      events: count,
      functions: FUNCTIONS,
      runs,
      seconds,
      runsPerSecond: runs / seconds,
      eventsPerSecond: count / (emittedMs / 1000),
      lost,
      twice,
    };
  } finally {
    for (const worker of workers) await worker.stop().catch(() => {});
    for (const queue of queues) {
      for (const name of [queue, `${queue}.dlq`, ...retryQueuesOf(queue)]) {
        await admin.deleteQueue(name).catch(() => {});
      }
    }
  }
}

/** The table row of the figure, and whether it held (every run seen once). */
export function formatEvents(figures: EventFigures): { lines: string[]; held: boolean } {
  const held = figures.lost === 0 && figures.twice === 0;
  return {
    held,
    lines: [
      `Events: ${figures.events} events to ${figures.functions} functions, ${figures.runs} runs in ${
        figures.seconds.toFixed(2)
      } s: ${Math.round(figures.runsPerSecond)} runs/s (emitted at ${
        Math.round(figures.eventsPerSecond)
      } events/s); ${figures.lost} lost, ${figures.twice} run twice${held ? "" : "  MISSED"}`,
    ],
  };
}
