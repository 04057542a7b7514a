/**
 * A bench client process (`bench/client.ts`) kept running and driven run by
 * run over its standard input, so that two sides can take turns.
 *
 * @module
 */

import type {
  OpenLoopCommand,
  OpenLoopSample,
  RunCommand,
  RunSample,
  StreamCommand,
  StreamSample,
} from "./client.ts";
import { cpuBetween, type CpuPids, cpuSnapshot } from "./cpu.ts";

/** One side of the benchmark, ready to run. */
export interface Driver {
  /** The bench client's process: the caller whose CPU time a run counts. */
  readonly pid: number;
  /** Runs one command and resolves with what it measured. */
  run(command: RunCommand): Promise<RunSample>;
  /** Streams calls (the product's client only). */
  stream(command: StreamCommand): Promise<StreamSample>;
  /** Runs an open loop. */
  open(command: OpenLoopCommand): Promise<OpenLoopSample>;
  close(): Promise<void>;
}

/** The longest one run of a bench client may take: ten thousand tasks take seconds. */
const RUN_TIMEOUT_MS = 300_000;

/** The V8 flags `deno task dispatch` runs with, read from deno.json so the two cannot drift. */
async function dispatcherV8Flags(): Promise<string> {
  const config = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));
  const command: string = config.tasks.dispatch.command;
  const flags = command.match(/--v8-flags=(\S+)/)?.[1];
  if (flags === undefined) throw new Error("deno.json: the dispatch task sets no --v8-flags");
  return flags;
}

/**
 * Starts `bench/client.ts <side> <url> <functions...>` and resolves once it
 * is connected. The product's client runs with the V8 flags of `deno task
 * dispatch`; the bare echo's with none.
 */
export async function startDriver(
  side: "bare" | "product",
  url: string,
  functions: Record<string, string> = {},
): Promise<Driver> {
  const v8 = side === "product" ? `--expose-gc,${await dispatcherV8Flags()}` : "--expose-gc";
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      `--v8-flags=${v8}`,
      "bench/client.ts",
      side,
      url,
      ...Object.entries(functions).map(([task, queue]) => `${task}=${queue}`),
    ],
    cwd: new URL("../", import.meta.url),
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let stderr = "";
  child.stderr.pipeThrough(new TextDecoderStream()).pipeTo(
    new WritableStream({ write: (chunk) => void (stderr = (stderr + chunk).slice(-4000)) }),
  ).catch(() => {});
  let buffered = "";
  const nextLine = async (): Promise<string> => {
    while (!buffered.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`The ${side} bench client stopped: ${stderr.trim()}`);
      buffered += value;
    }
    const end = buffered.indexOf("\n");
    const line = buffered.slice(0, end);
    buffered = buffered.slice(end + 1);
    return line;
  };
  const ready = JSON.parse(await nextLine());
  if (!ready.ready) throw new Error(`The ${side} bench client did not start: ${stderr}`);
  const send = async (command: RunCommand | StreamCommand | OpenLoopCommand) => {
    await writer.write(new TextEncoder().encode(JSON.stringify(command) + "\n"));
    // A broker that stops answering must end the bench with a reason, not hang it.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) =>
      timer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch {
          // Already gone.
        }
        reject(
          new Error(
            `The ${side} bench client did not finish a run within ${
              RUN_TIMEOUT_MS / 1000
            } s (is the broker answering?): ${stderr.trim()}`,
          ),
        );
      }, RUN_TIMEOUT_MS)
    );
    try {
      return JSON.parse(await Promise.race([nextLine(), late]));
    } finally {
      clearTimeout(timer);
    }
  };
  return {
    pid: child.pid,
    run: (command) => send(command),
    stream: (command) => send(command),
    open: (command) => send(command),
    async close() {
      await writer.close().catch(() => {});
      await child.status;
      await reader.cancel().catch(() => {});
    },
  };
}

/** What taking turns measured: each side's samples, in pairs. */
export interface Paired {
  limit: RunSample[];
  product: RunSample[];
}

/** One side of a pair of runs: its driver, what it runs, and whose CPU time it counts. */
export interface Side {
  driver: Driver;
  command: RunCommand;
  /** The server (a worker, the echo) and the broker; the caller is the driver. */
  cpu?: Omit<CpuPids, "client">;
}

/** Runs `side` once; with `cpu`, also the CPU time each process spent on the run. */
async function runSide(side: Side): Promise<RunSample> {
  if (side.cpu === undefined) return await side.driver.run(side.command);
  const pids = { ...side.cpu, client: side.driver.pid };
  const before = cpuSnapshot(pids);
  const sample = await side.driver.run(side.command);
  return { ...sample, cpu_ms: cpuBetween(before, cpuSnapshot(pids)) };
}

/**
 * Warms both sides with `warmups` untimed runs each, then takes `pairs`
 * pairs of runs, in the order limit-product, product-limit, limit-product...
 * so that a drift of the machine's load, or a side's advantage in going
 * first, weighs on both alike.
 */
export async function takeTurns(
  limit: Side,
  product: Side,
  pairs: number,
  warmups: number,
): Promise<Paired> {
  const runLimit = () => runSide(limit);
  const runProduct = () => runSide(product);
  for (let i = 0; i < warmups; i++) {
    await runLimit();
    await runProduct();
  }
  const paired: Paired = { limit: [], product: [] };
  for (let i = 0; i < pairs; i++) {
    if (i % 2 === 0) {
      paired.limit.push(await runLimit());
      paired.product.push(await runProduct());
    } else {
      paired.product.push(await runProduct());
      paired.limit.push(await runLimit());
    }
  }
  return paired;
}
