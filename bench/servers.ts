/**
 * What every section of the benchmark shares: queues of its own (deleted at
 * the end), servers (workers, the bare echo) started as processes whose
 * output nobody reads, bench clients, and the broker's own process for its
 * CPU time. One {@linkcode BenchServers} per run; `stopAll()` between
 * sections, `cleanUp()` at the end.
 *
 * @module
 */

import type { Broker } from "../core/broker/mod.ts";
import { retryQueuesOf } from "../core/contract/names.ts";
import { listenerPid } from "./cpu.ts";
import { type Driver, startDriver } from "./driver.ts";
import { workerArgs } from "./processes.ts";

/** Queue types the benchmark can measure. */
export type QueueType = "classic" | "quorum";

/** How a worker of the benchmark is started. */
export interface WorkerSpec {
  /** `task_a`, `task_b`, or a module path such as `bench/functions/busy.ts`. */
  fn: string;
  queue: string;
  queueType: QueueType;
  /** `CONCURRENCY` and `PREFETCH`, both; unset: the worker's defaults. */
  window?: number;
  /** Where the function's sandbox runs. @default {"thread"} */
  isolation?: "thread" | "process";
}

/** A started server: its process, for its CPU time. */
export interface Server {
  pid: number;
}

/** The benchmark's processes and queues; see the module documentation. */
export class BenchServers {
  readonly url: string;
  readonly admin: Broker;
  /** The broker's process on this machine, if it runs here. */
  readonly brokerPid: number | undefined;
  readonly #run = crypto.randomUUID().slice(0, 8);
  readonly #queues: string[] = [];
  readonly #children: Deno.ChildProcess[] = [];
  readonly #drivers: Driver[] = [];

  constructor(url: string, admin: Broker) {
    this.url = url;
    this.admin = admin;
    const first = new URL(url.split(",")[0].trim());
    const local = ["localhost", "127.0.0.1", "[::1]"].includes(first.hostname);
    this.brokerPid = local ? listenerPid(Number(first.port || 5672)) : undefined;
  }

  /** A queue of this run, `bench_<name>_<run>`, deleted (with its DLQ and retries) at the end. */
  queue(name: string): string {
    const full = `bench_${name}_${this.#run}`;
    // Retry queues never expire: they go with the queue they serve.
    this.#queues.push(full, `${full}.dlq`, ...retryQueuesOf(full));
    return full;
  }

  /**
   * Starts `deno <args>` with `env` (its output unread: reading a worker's
   * line per task would cost this process CPU the bare echo never makes it
   * spend), and resolves once it consumes `queue`.
   */
  async serve(args: string[], env: Record<string, string>, queue: string): Promise<Server> {
    const child = new Deno.Command(Deno.execPath(), {
      args,
      cwd: new URL("../", import.meta.url),
      // Several workers share this host: their /metrics ports would clash.
      env: { AMQP_URL: this.url, METRICS_PORT: "0", ...env },
      stdout: "null",
      stderr: "inherit",
    }).spawn();
    this.#children.push(child);
    const deadline = Date.now() + 30_000;
    while (((await this.admin.inspectQueue(queue))?.consumers ?? 0) === 0) {
      if (Date.now() > deadline) throw new Error(`Cannot start ${args.at(-1)}: it never consumed`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return { pid: child.pid };
  }

  /** Starts a worker as `spec` says. */
  worker(spec: WorkerSpec): Promise<Server> {
    const args = workerArgs(spec.fn, spec.fn.startsWith("bench/") ? ["bench"] : []);
    if (spec.isolation === "process") {
      // The sandbox's own process, started (and started again) with deno.
      args.splice(args.length - 2, 1, `--allow-run=${Deno.execPath()}`, "bench/process_worker.ts");
    }
    const window: Record<string, string> = spec.window === undefined
      ? {}
      : { CONCURRENCY: String(spec.window), PREFETCH: String(spec.window) };
    return this.serve(
      args,
      { QUEUE: spec.queue, QUEUE_TYPE: spec.queueType, ...window },
      spec.queue,
    );
  }

  /** Starts a bare echo server on `queue` with `prefetch`. */
  echo(queue: string, prefetch: number, queueType: QueueType): Promise<Server> {
    return this.serve(
      ["run", "-A", "bench/bare_echo.ts", this.url, queue, String(prefetch), queueType],
      {},
      queue,
    );
  }

  /** Starts a bench client (`bench/client.ts`), stopped with the servers. */
  async driver(side: "bare" | "product", functions: Record<string, string> = {}): Promise<Driver> {
    const driver = await startDriver(side, this.url, functions);
    this.#drivers.push(driver);
    return driver;
  }

  /** Stops every driver and server started so far. */
  async stopAll(): Promise<void> {
    for (const driver of this.#drivers.splice(0)) await driver.close();
    for (const child of this.#children.splice(0)) {
      try {
        child.kill("SIGTERM");
      } catch {
        // Already gone.
      }
      await child.status;
    }
  }

  /** Stops everything and deletes every queue of the run. */
  async cleanUp(): Promise<void> {
    await this.stopAll();
    for (const name of this.#queues) await this.admin.deleteQueue(name).catch(() => {});
  }
}
