/**
 * `deno task bench`: measures the product against the limit it can
 * approach, in one run on one broker, and checks the targets of README.md
 * "Performance". The limit is a bare amqplib RPC echo with the product's
 * delivery guarantees (bench/bare_echo.ts). Every side runs as its own
 * process, like real callers and workers.
 *
 * Exit codes: 0 every target met (or `--quick`), 1 a target missed,
 * 2 bad usage, 3 broker unavailable.
 *
 * @module
 */

import { type Broker } from "../functions/_runtime/broker/broker.ts";
import { maskUrl } from "../functions/_runtime/broker/amqp_url.ts";
import { LOCAL_AMQP_URL } from "../dispatcher/choose_broker.ts";
import { connectRabbitMq } from "../dispatcher/connect_rabbitmq.ts";
import { type CliIo, EXIT, readOptions, runCli, wholeNumber } from "../dispatcher/cli.ts";
import { defaultResultsPath, writeOutput } from "../dispatcher/output_files.ts";
import {
  type RunningProcess,
  startDeno,
  WORKER_MAIN,
  workerPermissions,
} from "../tests/_processes.ts";

const HELP = `Usage: deno task bench [options]

Measures, in one run on one RabbitMQ:
  - throughput of 1,000 and 10,000 concurrent no-op tasks: the product
    (dispatcher code plus a real worker process) against the limit, a bare
    amqplib RPC echo with the same guarantees (persistent requests, publisher
    confirms, replies confirmed before each ack), both with the same prefetch;
  - the seed scenario (task_a 100 ms and task_b 200 ms together): overhead
    = wall time - 200 ms, for the product and the bare echo;
  - the dispatcher's memory for 10,000 tasks over 5 runs in one process;
  - a worker's idle memory and its time from start to consuming, as a host
    process and as a container (when Docker is available), and the image size.
Prints a table with the ratios and targets and saves results/bench_<timestamp>.json.

Options:
  --broker URL      RabbitMQ URL of a user that may create queues, such as the
                    host's guest or the compose stack's admin (default:
                    $AMQP_URL, else ${LOCAL_AMQP_URL})
  --quick           a short run that checks the benchmark works, not its figures
  --reps N          repetitions per measurement (default: 5; --quick: 1)
  --prefetch N      prefetch and concurrency of both echo and worker (default: 256)
  --no-container    skip the container measurements
  --out FILE        save the figures here instead
  --no-save         do not save the figures
  --json            print the figures as one JSON document on stdout
  -h, --help        show this help`;

interface Sample {
  ms: number;
  tps: number;
  rss_mb: number;
  heap_mb: number;
}

/** The middle value (the mean of the two middle ones for an even count). */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function round(value: number, digits = 1): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

function parseFlags(args: string[]) {
  const values = readOptions(args, {
    broker: { type: "string" },
    quick: { type: "boolean", default: false },
    reps: { type: "string" },
    prefetch: { type: "string", default: "256" },
    "no-container": { type: "boolean", default: false },
    out: { type: "string" },
    "no-save": { type: "boolean", default: false },
    json: { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  }, "bench");
  return {
    ...values,
    reps: wholeNumber(values.reps, "--reps", values.quick ? 1 : 5),
    prefetch: wholeNumber(values.prefetch, "--prefetch", 256),
  };
}

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

async function startProcess(
  args: string[],
  env: Record<string, string>,
  ready: RegExp,
): Promise<{ process: RunningProcess; readyMs: number }> {
  const started = performance.now();
  const process = startDeno(args, env);
  await process.waitForLine(ready, 30_000);
  return { process, readyMs: performance.now() - started };
}

const CONSUMING = /"msg":"Consuming"/;

// Rounds of the seed scenario per side, each of `seedReps` repetitions.
const SEED_ROUNDS = 2;

async function docker(args: string[]): Promise<{ ok: boolean; out: string }> {
  try {
    const output = await new Deno.Command("docker", { args, stdout: "piped", stderr: "piped" })
      .output();
    const out = new TextDecoder().decode(output.stdout).trim();
    return { ok: output.success, out: out || new TextDecoder().decode(output.stderr) };
  } catch {
    return { ok: false, out: "docker is not installed" };
  }
}

interface ContainerFigures {
  ready_ms: number;
  image_mb: number;
}

/** Builds the task_a image and times `docker run` to "Consuming", with the broker up. */
async function measureContainer(url: string, queue: string, reps: number) {
  if (!(await docker(["info"])).ok) return undefined;
  const tag = `bench-worker-a:${queue}`;
  const build = await docker([
    "build",
    "-q",
    "-f",
    "Dockerfile.worker",
    "--build-arg",
    "FUNCTION=task_a",
    ...(Deno.env.get("DENO_IMAGE")
      ? ["--build-arg", `DENO_IMAGE=${Deno.env.get("DENO_IMAGE")}`]
      : []),
    "-t",
    tag,
    ".",
  ]);
  if (!build.ok) throw new Error(`Cannot build the worker image: ${build.out}`);
  const broker = new URL(url);
  const samples: number[] = [];
  try {
    for (let rep = 0; rep < reps; rep++) {
      const name = `${queue}-${rep}`;
      const run = await docker([
        "run",
        "-d",
        "--name",
        name,
        "--network",
        "host",
        "-e",
        `AMQP_URL=${url}`,
        "-e",
        `QUEUE=${queue}`,
        tag,
        "run",
        "--cached-only",
        `--allow-net=${broker.hostname}:${broker.port || 5672}`,
        "--allow-env",
        "--allow-sys=hostname",
        "functions/function.ts",
      ]);
      if (!run.ok) throw new Error(`Cannot run the worker image: ${run.out}`);
      let readyMs: number | undefined;
      const deadline = Date.now() + 30_000;
      while (readyMs === undefined && Date.now() < deadline) {
        const logs = await docker(["logs", name]);
        const line = logs.out.split("\n").find((l) => CONSUMING.test(l));
        if (line) {
          const startedAt = (await docker(["inspect", "-f", "{{.State.StartedAt}}", name])).out;
          readyMs = Date.parse(JSON.parse(line).ts) - Date.parse(startedAt);
        } else await new Promise((resolve) => setTimeout(resolve, 50));
      }
      await docker(["rm", "-f", name]);
      if (readyMs === undefined) throw new Error("The worker container did not start consuming");
      samples.push(readyMs);
    }
    const size = Number((await docker(["image", "inspect", "-f", "{{.Size}}", tag])).out);
    return { ready_ms: round(median(samples)), image_mb: round(size / 1e6) } as ContainerFigures;
  } finally {
    await docker(["rmi", "-f", tag]);
  }
}

interface Target {
  name: string;
  value: number | undefined;
  limit: number;
  /** `max`: value must be at most limit; `min`: at least. */
  kind: "max" | "min";
  unit: string;
}

/** Runs the benchmark with `args`; resolves with its exit code. */
export async function main(args: string[], io: CliIo): Promise<number> {
  let flags;
  try {
    flags = parseFlags(args);
  } catch (error) {
    io.err((error as Error).message);
    return EXIT.usage;
  }
  if (flags.help) {
    io.out(HELP);
    return EXIT.passed;
  }
  const say = flags.json ? io.err : io.out;
  const url = flags.broker ?? (io.env("AMQP_URL") || LOCAL_AMQP_URL);
  let admin: Broker;
  try {
    admin = await connectRabbitMq(url, 5000, { connectionName: "bench" });
  } catch (error) {
    io.err(
      `${(error as Error).message}\nThe benchmark needs RabbitMQ: start it, or pass --broker.`,
    );
    return EXIT.unavailable;
  }
  const run = crypto.randomUUID().slice(0, 8);
  const queues: string[] = [];
  const processes: RunningProcess[] = [];
  const sizes = flags.quick ? [200, 1000] : [1000, 10_000];
  // Ten repetitions per side in all (four in --quick), in two rounds.
  const seedReps = flags.quick ? 2 : 5;

  const prefetch = String(flags.prefetch);
  const queue = (name: string) => {
    const full = `bench_${name}_${run}`;
    queues.push(full, `${full}.dlq`);
    return full;
  };
  const spawn = async (args: string[], env: Record<string, string>, ready = CONSUMING) => {
    // Several workers share this host: their /metrics ports would clash. The
    // counters behind /metrics are kept all the same.
    const started = await startProcess(args, { AMQP_URL: url, METRICS_PORT: "0", ...env }, ready);
    processes.push(started.process);
    return started;
  };
  const quiet: Deno.ChildProcess[] = [];
  /**
   * Starts a server whose output nobody reads, and resolves once it consumes
   * `queue`: reading a worker's log line per task would cost this process
   * CPU that the bare echo, which logs nothing, never makes it spend.
   */
  const serve = async (args: string[], env: Record<string, string>, queue: string) => {
    const child = new Deno.Command(Deno.execPath(), {
      args,
      cwd: new URL("../", import.meta.url),
      env: { AMQP_URL: url, METRICS_PORT: "0", ...env },
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
    say(
      `Benchmark on ${
        maskUrl(url)
      }, ${navigator.hardwareConcurrency} cores, prefetch ${prefetch}, ${flags.reps} repetition(s)${
        flags.quick ? " (quick)" : ""
      }`,
    );

    // 1. A worker's start and idle memory, as a host process.
    say("Worker start and idle memory...");
    const readyMs: number[] = [];
    const idleRss: number[] = [];
    for (let rep = 0; rep < Math.max(1, Math.min(3, flags.reps)); rep++) {
      const { process, readyMs: ms } = await spawn(
        ["run", ...workerPermissions(), WORKER_MAIN, "task_a"],
        { QUEUE: queue(`idle${rep}`) },
      );
      readyMs.push(ms);
      await new Promise((resolve) => setTimeout(resolve, 1000));
      idleRss.push(rssOf(process.child.pid));
      await stopAll();
    }

    // 2. Throughput: the limit and the product, same prefetch, same sizes.
    const echoQueue = queue("echo");
    const productQueue = queue("product");
    await serve(["run", "-A", "bench/bare_echo.ts", url, echoQueue, prefetch], {}, echoQueue);
    await serve(["run", ...workerPermissions(), WORKER_MAIN, "task_a"], {
      QUEUE: productQueue,
      CONCURRENCY: prefetch,
      PREFETCH: prefetch,
    }, productQueue);
    const throughput: Record<string, { limit: Sample[]; product: Sample[] }> = {};
    for (const size of sizes) {
      say(`Throughput, ${size} tasks...`);
      const limit = await runClient(["bare", url, String(flags.reps), `${echoQueue}:echo:0`], size);
      const product = await runClient(
        ["product", url, String(flags.reps), `${productQueue}:task_a:0`],
        size,
      );
      throughput[size] = { limit, product };
    }
    await stopAll();

    // 3. The seed scenario: task_a 100 ms and task_b 200 ms together.
    say("Seed scenario...");
    const [echoA, echoB] = [queue("echo_a"), queue("echo_b")];
    await serve(["run", "-A", "bench/bare_echo.ts", url, echoA, "1"], {}, echoA);
    await serve(["run", "-A", "bench/bare_echo.ts", url, echoB, "1"], {}, echoB);
    const [seedA, seedB] = [queue("seed_a"), queue("seed_b")];
    await serve(["run", ...workerPermissions(), WORKER_MAIN, "task_a"], { QUEUE: seedA }, seedA);
    await serve(["run", ...workerPermissions(), WORKER_MAIN, "task_b"], { QUEUE: seedB }, seedB);
    // Taken in alternating rounds, so that a drift of the machine's load
    // weighs on both sides alike.
    const limitSeed: Sample[] = [];
    const productSeed: Sample[] = [];
    for (let round = 0; round < SEED_ROUNDS; round++) {
      limitSeed.push(
        ...await runClient([
          "bare",
          url,
          String(seedReps),
          `${echoA}:echo:100`,
          `${echoB}:echo:200`,
        ]),
      );
      productSeed.push(
        ...await runClient([
          "product",
          url,
          String(seedReps),
          `${seedA}:task_a:100`,
          `${seedB}:task_b:200`,
        ]),
      );
    }
    await stopAll();

    // 4. The worker as a container.
    let container: ContainerFigures | undefined;
    if (!flags.quick && !flags["no-container"]) {
      say("Worker container...");
      container = await measureContainer(url, queue("container"), 3);
    }

    const tps = (samples: Sample[]) => round(median(samples.map((s) => s.tps)));
    const limitTps: Record<string, number> = {};
    const productTps: Record<string, number> = {};
    const ratio: Record<string, number> = {};
    for (const size of sizes) {
      limitTps[size] = tps(throughput[size].limit);
      productTps[size] = tps(throughput[size].product);
      ratio[size] = round(productTps[size] / limitTps[size], 3);
    }
    const largest = throughput[sizes.at(-1)!].product;
    const seedOverhead = round(median(productSeed.map((s) => s.ms - 200)), 2);
    const limitSeedOverhead = round(median(limitSeed.map((s) => s.ms - 200)), 2);
    const document = {
      kind: "bench",
      at: new Date().toISOString(),
      quick: flags.quick,
      broker: maskUrl(url),
      cores: navigator.hardwareConcurrency,
      prefetch: flags.prefetch,
      reps: flags.reps,
      sizes,
      limit_tps: limitTps,
      product_tps: productTps,
      ratio,
      seed_overhead_ms_median: seedOverhead,
      limit_seed_overhead_ms_median: limitSeedOverhead,
      seed_overhead_ratio: round(seedOverhead / limitSeedOverhead, 3),
      dispatcher_rss_mb_max: round(Math.max(...largest.map((s) => s.rss_mb))),
      dispatcher_rss_mb_per_run: largest.map((s) => s.rss_mb),
      dispatcher_heap_mb_per_run: largest.map((s) => s.heap_mb),
      worker_idle_rss_mb: round(median(idleRss)),
      worker_ready_ms: round(median(readyMs)),
      container_ready_ms: container?.ready_ms ?? null,
      image_mb: container?.image_mb ?? null,
      samples: { throughput, limit_seed: limitSeed, product_seed: productSeed },
    };

    const rss = document.dispatcher_rss_mb_per_run;
    const heap = document.dispatcher_heap_mb_per_run;
    const targets: Target[] = [
      ...sizes.map((size) => ({
        name: `throughput ratio, ${size.toLocaleString("en")} tasks`,
        value: ratio[size],
        limit: 0.8,
        kind: "min" as const,
        unit: "",
      })),
      {
        name: "seed overhead / limit's",
        value: document.seed_overhead_ratio,
        limit: 1.2,
        kind: "max",
        unit: "",
      },
      {
        name: `dispatcher RSS, ${sizes.at(-1)!.toLocaleString("en")} tasks`,
        value: document.dispatcher_rss_mb_max,
        limit: 150,
        kind: "max",
        unit: " MB",
      },
      {
        name: `dispatcher live heap growth over ${heap.length} runs in one process`,
        value: round(heap.at(-1)! - heap[0]),
        limit: 5,
        kind: "max",
        unit: " MB",
      },
      {
        name: "worker idle RSS",
        value: document.worker_idle_rss_mb,
        limit: 60,
        kind: "max",
        unit: " MB",
      },
      {
        name: "worker start to consuming (host)",
        value: document.worker_ready_ms,
        limit: 300,
        kind: "max",
        unit: " ms",
      },
      {
        name: "worker start to consuming (container)",
        value: container?.ready_ms,
        limit: 1000,
        kind: "max",
        unit: " ms",
      },
      {
        name: "worker image size",
        value: container?.image_mb,
        limit: 150,
        kind: "max",
        unit: " MB",
      },
    ];

    const rows: string[][] = [["measure", "limit (bare amqplib)", "product", "ratio"]];
    for (const size of sizes) {
      rows.push([
        `throughput, ${size.toLocaleString("en")} no-op tasks`,
        `${limitTps[size].toFixed(0)} tasks/s`,
        `${productTps[size].toFixed(0)} tasks/s`,
        ratio[size].toFixed(2),
      ]);
    }
    rows.push([
      "seed scenario overhead (median)",
      `${limitSeedOverhead.toFixed(1)} ms`,
      `${seedOverhead.toFixed(1)} ms`,
      document.seed_overhead_ratio.toFixed(2),
    ]);
    const per = `per ${sizes.at(-1)!.toLocaleString("en")}-task run`;
    rows.push([`dispatcher RSS ${per}`, "", `${rss.map((r) => r.toFixed(0)).join(", ")} MB`, ""]);
    rows.push([`dispatcher heap ${per}`, "", `${heap.map((h) => h.toFixed(1)).join(", ")} MB`, ""]);
    rows.push(["worker idle RSS", "", `${document.worker_idle_rss_mb} MB`, ""]);
    rows.push(["worker start to consuming, host", "", `${document.worker_ready_ms} ms`, ""]);
    if (container) {
      rows.push(["worker start to consuming, container", "", `${container.ready_ms} ms`, ""]);
      rows.push(["worker image size", "", `${container.image_mb} MB`, ""]);
    }
    const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
    say("");
    for (const row of rows) say(row.map((cell, i) => cell.padEnd(widths[i])).join("  ").trimEnd());
    say("");
    let missed = 0;
    for (const target of targets) {
      if (target.value === undefined) {
        say(`  -     ${target.name}: not measured`);
        continue;
      }
      const met = target.kind === "min"
        ? target.value >= target.limit
        : target.value <= target.limit;
      if (!met) missed++;
      say(
        `  ${met ? "met " : "MISS"}  ${target.name}: ${target.value}${target.unit} (target ${
          target.kind === "min" ? ">=" : "<="
        } ${target.limit}${target.unit})`,
      );
    }
    if (flags.json) io.out(JSON.stringify(document, null, 2));
    if (!flags["no-save"]) {
      const out = flags.out ?? defaultResultsPath("bench", new Date());
      await writeOutput(out, JSON.stringify(document, null, 2) + "\n");
      say(`Results saved to ${out}`);
    }
    if (flags.quick) return EXIT.passed;
    return missed === 0 ? EXIT.passed : EXIT.failed;
  } finally {
    await stopAll();
    for (const name of queues) await admin.deleteQueue(name).catch(() => {});
    await admin.close();
  }
}

if (import.meta.main) await runCli(main);
