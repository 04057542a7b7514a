/**
 * Workers other than the tuned one, each against a tuned one in turns, on
 * the product's default queue type (quorum):
 *
 * - the default worker, started with no settings (`CONCURRENCY` and
 *   `PREFETCH` unset), on no-op tasks;
 * - a worker whose function's sandbox runs in a process of its own
 *   (`isolation: "process"`) against one whose sandbox is a Web Worker in
 *   the worker's process (the default, `thread`): no-op throughput, tuned,
 *   and the seed scenario's overhead, as started with no settings.
 *
 * @module
 */

import { noops, seedOf, WARMUPS } from "./core.ts";
import { type Paired, takeTurns } from "./driver.ts";
import type { BenchServers } from "./servers.ts";

/** What {@linkcode measureVariants} found; in each pair the tuned or thread worker is `limit`. */
export interface VariantFigures {
  /** The tuned worker (limit) against the default one (product), at the largest size. */
  defaultWorker: Paired;
  /** The sandbox in a thread (limit) against in a process (product): no-op tasks, tuned. */
  isolationThroughput: Paired;
  /** The same, for the seed scenario, each with no settings. */
  isolationSeed: Paired;
}

/** Options of {@linkcode measureVariants}. */
export interface VariantOptions {
  size: number;
  reps: number;
  seedPairs: number;
  prefetch: number;
  say: (line: string) => void;
}

/** Measures the variants; stops their servers after. */
export async function measureVariants(
  servers: BenchServers,
  options: VariantOptions,
): Promise<VariantFigures> {
  const { say, size } = options;
  const broker = servers.brokerPid;
  const queueType = "quorum" as const;
  const [tunedQueue, defaultQueue, processQueue] = [
    servers.queue("tuned"),
    servers.queue("default"),
    servers.queue("process"),
  ];
  const [threadA, threadB, processA, processB] = [
    servers.queue("thread_seed_a"),
    servers.queue("thread_seed_b"),
    servers.queue("process_seed_a"),
    servers.queue("process_seed_b"),
  ];
  const window = options.prefetch;
  const tuned = await servers.worker({ fn: "task_a", queue: tunedQueue, queueType, window });
  const plain = await servers.worker({ fn: "task_a", queue: defaultQueue, queueType });
  const isolated = await servers.worker({
    fn: "task_a",
    queue: processQueue,
    queueType,
    window,
    isolation: "process",
  });
  await servers.worker({ fn: "task_a", queue: threadA, queueType });
  await servers.worker({ fn: "task_b", queue: threadB, queueType });
  await servers.worker({ fn: "task_a", queue: processA, queueType, isolation: "process" });
  await servers.worker({ fn: "task_b", queue: processB, queueType, isolation: "process" });
  const drivers = {
    tuned: await servers.driver("product", { task_a: tunedQueue }),
    plain: await servers.driver("product", { task_a: defaultQueue }),
    isolated: await servers.driver("product", { task_a: processQueue }),
    threadSeed: await servers.driver("product", { task_a: threadA, task_b: threadB }),
    processSeed: await servers.driver("product", { task_a: processA, task_b: processB }),
  };
  try {
    say(`Default worker against a tuned one (${window}), ${size} tasks, ${options.reps} pairs...`);
    const defaultWorker = await takeTurns(
      { driver: drivers.tuned, command: noops("task_a", size), cpu: { server: tuned.pid, broker } },
      { driver: drivers.plain, command: noops("task_a", size), cpu: { server: plain.pid, broker } },
      options.reps,
      WARMUPS,
    );
    say(`Sandbox in a process against in a thread, ${size} tasks, ${options.reps} pairs...`);
    const isolationThroughput = await takeTurns(
      { driver: drivers.tuned, command: noops("task_a", size), cpu: { server: tuned.pid, broker } },
      {
        driver: drivers.isolated,
        command: noops("task_a", size),
        cpu: { server: isolated.pid, broker },
      },
      options.reps,
      WARMUPS,
    );
    say(`Sandbox in a process against in a thread, seed scenario, ${options.seedPairs} pairs...`);
    const isolationSeed = await takeTurns(
      { driver: drivers.threadSeed, command: seedOf("task_a", "task_b") },
      { driver: drivers.processSeed, command: seedOf("task_a", "task_b") },
      options.seedPairs,
      WARMUPS,
    );
    return { defaultWorker, isolationThroughput, isolationSeed };
  } finally {
    await servers.stopAll();
  }
}
