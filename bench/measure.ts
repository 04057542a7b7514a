/**
 * The benchmark's measurements, in one run on one broker: a worker's start
 * and idle memory, throughput of the product against the bare amqplib echo,
 * the seed scenario's overhead on both, and the worker as a container. Every
 * side runs as its own process, like real callers and workers.
 *
 * @module
 */

import type { Broker } from "../functions/_runtime/broker/broker.ts";
import { type ContainerFigures, measureContainer } from "./container.ts";
import { CONSUMING, type RunningProcess, startDeno, workerArgs } from "./processes.ts";

/** One repetition of a bench client: its wall time, rate and memory. */
export interface Sample {
  ms: number;
  tps: number;
  rss_mb: number;
  heap_mb: number;
}

/** Options for {@linkcode measure}. */
export interface MeasureOptions {
  /** The broker's URL, password included: the processes connect with it. */
  url: string;
  /** A connection of a user that may create and delete queues. */
  admin: Broker;
  quick: boolean;
  reps: number;
  prefetch: number;
  container: boolean;
  /** Prints progress for people. */
  say: (line: string) => void;
}

/** What {@linkcode measure} found. */
export interface Measurements {
  sizes: number[];
  throughput: Record<string, { limit: Sample[]; product: Sample[] }>;
  limitSeed: Sample[];
  productSeed: Sample[];
  readyMs: number[];
  idleRss: number[];
  container?: ContainerFigures;
}

// Rounds of the seed scenario per side, each of `seedReps` repetitions.
const SEED_ROUNDS = 2;

/** Runs a bench client process to its end and returns its samples. */
async function runClient(args: string[], tasks = 1): Promise<Sample[]> {
  // The product's client runs with the V8 flags of `deno task dispatch`; the
  // bare echo's with none.
  const v8 = args[0] === "product" ? "--expose-gc,--optimize-for-size" : "--expose-gc";
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `--v8-flags=${v8}`, "bench/client.ts", "--tasks", String(tasks), ...args],
    cwd: new URL("../", import.meta.url),
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(output.stdout);
  if (!output.success) {
    throw new Error(
      `bench client ${args[0]} failed: ${new TextDecoder().decode(output.stderr).slice(-2000)}`,
    );
  }
  return text.trim().split("\n").map((line) => JSON.parse(line));
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
  const sizes = options.quick ? [200, 1000] : [1000, 10_000];
  // Ten repetitions per side in all (four in --quick), in two rounds.
  const seedReps = options.quick ? 2 : 5;
  const prefetch = String(options.prefetch);
  const queue = (name: string) => {
    const full = `bench_${name}_${run}`;
    queues.push(full, `${full}.dlq`);
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

    // 2. Throughput: the limit and the product, same prefetch, same sizes.
    const echoQueue = queue("echo");
    const productQueue = queue("product");
    await serve(["run", "-A", "bench/bare_echo.ts", url, echoQueue, prefetch], {}, echoQueue);
    await serve(workerArgs("task_a"), {
      QUEUE: productQueue,
      CONCURRENCY: prefetch,
      PREFETCH: prefetch,
    }, productQueue);
    const throughput: Measurements["throughput"] = {};
    for (const size of sizes) {
      say(`Throughput, ${size} tasks...`);
      const reps = String(options.reps);
      const limit = await runClient(["bare", url, reps, `${echoQueue}:echo:0`], size);
      const product = await runClient(["product", url, reps, `${productQueue}:task_a:0`], size);
      throughput[size] = { limit, product };
    }
    await stopAll();

    // 3. The seed scenario: task_a 100 ms and task_b 200 ms together.
    say("Seed scenario...");
    const [echoA, echoB] = [queue("echo_a"), queue("echo_b")];
    await serve(["run", "-A", "bench/bare_echo.ts", url, echoA, "1"], {}, echoA);
    await serve(["run", "-A", "bench/bare_echo.ts", url, echoB, "1"], {}, echoB);
    const [seedA, seedB] = [queue("seed_a"), queue("seed_b")];
    await serve(workerArgs("task_a"), { QUEUE: seedA }, seedA);
    await serve(workerArgs("task_b"), { QUEUE: seedB }, seedB);
    // Taken in alternating rounds, so that a drift of the machine's load
    // weighs on both sides alike.
    const limitSeed: Sample[] = [];
    const productSeed: Sample[] = [];
    const reps = String(seedReps);
    for (let round = 0; round < SEED_ROUNDS; round++) {
      limitSeed.push(
        ...await runClient(["bare", url, reps, `${echoA}:echo:100`, `${echoB}:echo:200`]),
      );
      productSeed.push(
        ...await runClient(["product", url, reps, `${seedA}:task_a:100`, `${seedB}:task_b:200`]),
      );
    }
    await stopAll();

    // 4. The worker as a container.
    let container: ContainerFigures | undefined;
    if (!options.quick && options.container) {
      say("Worker container...");
      container = await measureContainer(url, queue("container"), 3);
    }
    return { sizes, throughput, limitSeed, productSeed, readyMs, idleRss, container };
  } finally {
    await stopAll();
    for (const name of queues) await admin.deleteQueue(name).catch(() => {});
  }
}
