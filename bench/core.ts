/**
 * The product against the limit on one queue type: throughput of N no-op
 * tasks at once and the seed scenario, the two sides taking turns, with the
 * CPU time each process spent on every timed run; then each side in an
 * open loop at half and four fifths of its own measured maximum, for its
 * tail latency.
 *
 * @module
 */

import type { OpenLoopSample, RunCommand } from "./client.ts";
import { type Paired, takeTurns } from "./driver.ts";
import type { BenchServers, QueueType } from "./servers.ts";
import { median } from "./stats.ts";

/** Untimed runs of each side before timing: JIT, first publishes, prefetch ramp. */
export const WARMUPS = 2;

/** The shares of its maximum each side is driven at in an open loop, in percent. */
export const OPEN_LOOP_LOADS = [50, 80] as const;

/** Both sides in an open loop at one share of their maximum. */
export interface OpenLoopPair {
  limit: OpenLoopSample & { rate: number };
  product: OpenLoopSample & { rate: number };
}

/** What {@linkcode measureCore} found on one queue type. */
export interface CoreFigures {
  throughput: Record<string, Paired>;
  seed: Paired;
  /** By share of the maximum ("50", "80"). */
  open: Record<string, OpenLoopPair>;
}

/** Options of {@linkcode measureCore}. */
export interface CoreOptions {
  queueType: QueueType;
  sizes: number[];
  reps: number;
  seedPairs: number;
  prefetch: number;
  /** How long each open loop runs. */
  openLoopMs: number;
  say: (line: string) => void;
}

/**
 * Fan-outs of `size` tasks timed as one run: a run of 1,000 tasks lasts a
 * fifth of a second, about as long as the scheduler's hiccups, so it is five
 * of them in a row; one of 10,000 lasts long enough alone.
 */
export function roundsOf(size: number): number {
  return Math.max(1, Math.floor(5000 / size));
}

/** A target: a queue for the bare echo, a function for the product. */
export function target(name: string, workMs: number) {
  return { queue: name, task: name, workMs };
}

/** A run of `size` no-op tasks of `name`, in rounds. */
export function noops(name: string, size: number): RunCommand {
  return { targets: [target(name, 0)], tasks: size, rounds: roundsOf(size) };
}

/** The seed scenario: a task of 100 ms and one of 200 ms, together. */
export function seedOf(a: string, b: string): RunCommand {
  return { targets: [target(a, 100), target(b, 200)], tasks: 1 };
}

/** Measures the product against the limit on `options.queueType`; stops its servers after. */
export async function measureCore(
  servers: BenchServers,
  options: CoreOptions,
): Promise<CoreFigures> {
  const { queueType: type, say } = options;
  const name = (what: string) => servers.queue(`${what}_${type}`);
  const [echo, echoA, echoB] = [name("echo"), name("echo_a"), name("echo_b")];
  const [work, seedA, seedB] = [name("product"), name("seed_a"), name("seed_b")];
  const broker = servers.brokerPid;
  const echoServer = await servers.echo(echo, options.prefetch, type);
  await servers.echo(echoA, 1, type);
  await servers.echo(echoB, 1, type);
  const worker = await servers.worker({
    fn: "task_a",
    queue: work,
    queueType: type,
    window: options.prefetch,
  });
  // The seed scenario's workers as a user starts them: no settings.
  await servers.worker({ fn: "task_a", queue: seedA, queueType: type });
  await servers.worker({ fn: "task_b", queue: seedB, queueType: type });
  const limit = await servers.driver("bare");
  const product = await servers.driver("product", { task_a: work });
  const seeded = await servers.driver("product", { task_a: seedA, task_b: seedB });
  try {
    const throughput: CoreFigures["throughput"] = {};
    for (const size of options.sizes) {
      say(`Throughput (${type}), ${size} tasks, ${options.reps} pairs of runs...`);
      throughput[size] = await takeTurns(
        { driver: limit, command: noops(echo, size), cpu: { server: echoServer.pid, broker } },
        { driver: product, command: noops("task_a", size), cpu: { server: worker.pid, broker } },
        options.reps,
        WARMUPS,
      );
    }
    say(`Seed scenario (${type}), ${options.seedPairs} pairs of runs...`);
    const seed = await takeTurns(
      { driver: limit, command: seedOf(echoA, echoB) },
      { driver: seeded, command: seedOf("task_a", "task_b") },
      options.seedPairs,
      WARMUPS,
    );
    // Each side at a share of its own maximum: its median at the largest size.
    const largest = throughput[options.sizes.at(-1)!];
    const max = {
      limit: median(largest.limit.map((s) => s.tps)),
      product: median(largest.product.map((s) => s.tps)),
    };
    const open: CoreFigures["open"] = {};
    for (const load of OPEN_LOOP_LOADS) {
      say(`Open loop (${type}) at ${load}% of each side's maximum...`);
      const rate = (side: "limit" | "product") => Math.round(max[side] * load / 100);
      const durationMs = options.openLoopMs;
      const limitRate = rate("limit");
      const productRate = rate("product");
      open[load] = {
        limit: {
          rate: limitRate,
          ...await limit.open({
            kind: "open",
            target: target(echo, 0),
            rate: limitRate,
            durationMs,
          }),
        },
        product: {
          rate: productRate,
          ...await product.open({
            kind: "open",
            target: target("task_a", 0),
            rate: productRate,
            durationMs,
          }),
        },
      };
    }
    return { throughput, seed, open };
  } finally {
    await servers.stopAll();
  }
}
