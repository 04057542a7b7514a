/**
 * The benchmark's measurements, in one run on one broker: a worker's start
 * and idle memory, throughput of the product against the bare amqplib echo,
 * the seed scenario's overhead on both, and the worker as a container. Every
 * side runs as its own process, like real callers and workers.
 *
 * @module
 */

import type { Broker } from "../core/broker/mod.ts";
import { retryQueuesOf } from "../core/contract/names.ts";
import { type ContainerFigures, measureContainer } from "./container.ts";
import { type Driver, type Paired, startDriver, takeTurns } from "./driver.ts";
import { type PeerFigures, peersAvailable, runPeer } from "./peers/mod.ts";
import { CONSUMING, type RunningProcess, startDeno, workerArgs } from "./processes.ts";
import { measureSandboxCost, type SandboxCost } from "./sandbox_cost.ts";

export type { RunSample as Sample } from "./client.ts";

/** Options for {@linkcode measure}. */
export interface MeasureOptions {
  /** The broker's URL, password included: the processes connect with it. */
  url: string;
  /** A connection of a user that may create and delete queues. */
  admin: Broker;
  quick: boolean;
  /** Timed pairs of runs per size. */
  reps: number;
  prefetch: number;
  container: boolean;
  /** The queue type of both sides' queues. */
  queueType: "classic" | "quorum";
  /** Also run the peers (BullMQ, Celery) whose parts are installed. */
  peers: boolean;
  /** Prints progress for people. */
  say: (line: string) => void;
}

/** A peer's figures, or why it was skipped. */
export type PeerResult = PeerFigures | { skipped: string };

/** What {@linkcode measure} found. */
export interface Measurements {
  sizes: number[];
  throughput: Record<string, Paired>;
  seed: Paired;
  readyMs: number[];
  idleRss: number[];
  container?: ContainerFigures;
  /** Why the container figures are missing, when they were asked for and failed. */
  containerSkipped?: string;
  sandbox: SandboxCost;
  peers: Record<string, PeerResult>;
}

// Untimed runs of each side before timing: JIT, first publishes, prefetch ramp.
const WARMUPS = 2;

/**
 * Fan-outs of `size` tasks timed as one run: a run of 1,000 tasks lasts a
 * fifth of a second, about as long as the scheduler's hiccups, so it is five
 * of them in a row; one of 10,000 lasts long enough alone.
 */
export function roundsOf(size: number): number {
  return Math.max(1, Math.floor(5000 / size));
}

/** A target: a queue for the bare echo, a function for the product. */
function target(name: string, workMs: number) {
  return { queue: name, task: name, workMs };
}

function rssOf(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kb = Number(status.match(/^VmRSS:\s+(\d+) kB/m)?.[1]);
  return kb / 1024;
}

/** Takes every measurement; the queues it made are deleted at the end, whatever happens. */
export async function measure(options: MeasureOptions): Promise<Measurements> {
  const { url, admin, say } = options;
  const run = crypto.randomUUID().slice(0, 8);
  const queues: string[] = [];
  const processes: RunningProcess[] = [];
  const quiet: Deno.ChildProcess[] = [];
  const drivers: Driver[] = [];
  const sizes = options.quick ? [200, 1000] : [1000, 10_000];
  const seedPairs = options.quick ? 2 : 10;
  const prefetch = String(options.prefetch);
  const queue = (name: string) => {
    const full = `bench_${name}_${run}`;
    // Retry queues never expire: they go with the queue they serve.
    queues.push(full, `${full}.dlq`, ...retryQueuesOf(full));
    return full;
  };
  // Several workers share this host: their /metrics ports would clash. The
  // counters behind /metrics are kept all the same.
  const env = (extra: Record<string, string>) => ({ AMQP_URL: url, METRICS_PORT: "0", ...extra });
  /**
   * Starts a server whose output nobody reads, and resolves once it consumes
   * `queue`: reading a worker's log line per task would cost this process
   * CPU that the bare echo, which logs nothing, never makes it spend.
   */
  const serve = async (args: string[], extra: Record<string, string>, queue: string) => {
    const child = new Deno.Command(Deno.execPath(), {
      args,
      cwd: new URL("../", import.meta.url),
      env: env(extra),
      stdout: "null",
      stderr: "inherit",
    }).spawn();
    quiet.push(child);
    const deadline = Date.now() + 30_000;
    while (((await admin.inspectQueue(queue))?.consumers ?? 0) === 0) {
      if (Date.now() > deadline) throw new Error(`Cannot start ${args.at(-1)}: it never consumed`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  };
  const stopAll = async () => {
    for (const driver of drivers.splice(0)) await driver.close();
    for (const process of processes.splice(0)) await process.stop();
    for (const child of quiet.splice(0)) {
      try {
        child.kill("SIGTERM");
      } catch {
        // Already gone.
      }
      await child.status;
    }
  };

  try {
    // 1. A worker's start and idle memory, as a host process.
    say("Worker start and idle memory...");
    const readyMs: number[] = [];
    const idleRss: number[] = [];
    for (let rep = 0; rep < Math.max(1, Math.min(3, options.reps)); rep++) {
      const started = performance.now();
      const process = startDeno(workerArgs("task_a"), env({ QUEUE: queue(`idle${rep}`) }));
      processes.push(process);
      await process.waitForLine(CONSUMING, 30_000);
      readyMs.push(performance.now() - started);
      await new Promise((resolve) => setTimeout(resolve, 1000));
      idleRss.push(rssOf(process.child.pid));
      await stopAll();
    }

    // 2. Throughput: the limit and the product, same prefetch, same
    // queues, taking turns. 3. The seed scenario, the same way.
    const [echo, echoA, echoB] = [queue("echo"), queue("echo_a"), queue("echo_b")];
    const [work, seedA, seedB] = [queue("product"), queue("seed_a"), queue("seed_b")];
    const echoArgs = (name: string, n: string) => [
      "run",
      "-A",
      "bench/bare_echo.ts",
      url,
      name,
      n,
      options.queueType,
    ];
    const type = { QUEUE_TYPE: options.queueType };
    await serve(echoArgs(echo, prefetch), {}, echo);
    await serve(echoArgs(echoA, "1"), {}, echoA);
    await serve(echoArgs(echoB, "1"), {}, echoB);
    await serve(workerArgs("task_a"), {
      ...type,
      QUEUE: work,
      CONCURRENCY: prefetch,
      PREFETCH: prefetch,
    }, work);
    await serve(workerArgs("task_a"), { ...type, QUEUE: seedA }, seedA);
    await serve(workerArgs("task_b"), { ...type, QUEUE: seedB }, seedB);
    const limit = await startDriver("bare", url);
    const product = await startDriver("product", url, { task_a: work });
    const seeded = await startDriver("product", url, { task_a: seedA, task_b: seedB });
    drivers.push(limit, product, seeded);
    const throughput: Measurements["throughput"] = {};
    for (const size of sizes) {
      say(`Throughput, ${size} tasks, ${options.reps} pairs of runs...`);
      throughput[size] = await takeTurns(
        {
          driver: limit,
          command: { targets: [target(echo, 0)], tasks: size, rounds: roundsOf(size) },
        },
        {
          driver: product,
          command: { targets: [target("task_a", 0)], tasks: size, rounds: roundsOf(size) },
        },
        options.reps,
        WARMUPS,
      );
    }
    say(`Seed scenario, ${seedPairs} pairs of runs...`);
    const seed = await takeTurns(
      { driver: limit, command: { targets: [target(echoA, 100), target(echoB, 200)], tasks: 1 } },
      {
        driver: seeded,
        command: { targets: [target("task_a", 100), target("task_b", 200)], tasks: 1 },
      },
      seedPairs,
      WARMUPS,
    );
    await stopAll();

    say("Sandbox cost...");
    const sandbox = await measureSandboxCost(options.quick ? 2 : 5, options.quick ? 1000 : 5000);

    // 4. The worker as a container.
    // A failed image build (no base image here, say) costs only these
    // figures, not the minutes of measurements already taken.
    let container: ContainerFigures | undefined;
    let containerSkipped: string | undefined;
    if (!options.quick && options.container) {
      say("Worker container...");
      try {
        container = await measureContainer(url, queue("container"), 3);
      } catch (error) {
        containerSkipped = error instanceof Error ? error.message : String(error);
        say(`Skipping the worker container: ${containerSkipped}`);
      }
    }

    // 5. The peers, on the same machine, one after the other.
    const peers: Measurements["peers"] = {};
    if (options.peers) {
      for (const availability of await peersAvailable({ amqpUrl: url })) {
        const name = availability.name as "bullmq" | "celery";
        if (!availability.available) {
          say(`Skipping ${name}: ${availability.reason}`);
          peers[name] = { skipped: availability.reason };
          continue;
        }
        say(`Peer ${name}...`);
        // A peer that fails (or hangs, and is stopped) costs only its own
        // figures, not the minutes of measurements already taken.
        try {
          peers[name] = await runPeer(name, {
            sizes,
            seedRuns: seedPairs,
            runs: options.reps,
            amqpUrl: url,
            log: (line) => say(`  ${line}`),
          });
        } catch (error) {
          const reason = `it failed: ${error instanceof Error ? error.message : String(error)}`;
          say(`Skipping ${name}: ${reason}`);
          peers[name] = { skipped: reason };
        }
      }
    }
    return {
      sizes,
      throughput,
      seed,
      readyMs,
      idleRss,
      container,
      containerSkipped,
      sandbox,
      peers,
    };
  } finally {
    await stopAll();
    for (const name of queues) await admin.deleteQueue(name).catch(() => {});
  }
}
