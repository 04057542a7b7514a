/**
 * The embedded default: an in-process broker plus each function of the
 * scenario in its own Web Worker, so `deno task dispatch` runs on a machine
 * with nothing but Deno. Each Web Worker gets no permissions at all when
 * Deno runs with `--unstable-worker-options` (as `deno task dispatch` does).
 *
 * @module
 */

import type { Broker } from "../functions/_runtime/broker.ts";
import type { LogFormat, LogLevel } from "../functions/_runtime/log.ts";
import { MemoryBroker } from "../functions/_runtime/memory_broker.ts";
import { serveBrokerOverPort } from "../functions/_runtime/port_broker.ts";
import type { EmbeddedEvent, EmbeddedStart } from "../functions/_runtime/embedded_worker.ts";

/** A function to start: its name (its module is `functions/<task>.ts`) and queue. */
export interface EmbeddedFunction {
  task: string;
  queue: string;
}

/** Options for {@linkcode startEmbedded}. */
export interface StartEmbeddedOptions {
  /** @default {"warn"} */
  logLevel?: LogLevel;
  /** @default {"text"} */
  logFormat?: LogFormat;
  /**
   * Handlers each function runs at once.
   * @default {1}
   */
  concurrency?: number;
  /**
   * Give up when a function is not consuming after this long.
   * @default {10_000}
   */
  readyTimeoutMs?: number;
  /** Where function modules live. @default {the project's functions/} */
  functionsDir?: URL;
}

/** A running embedded system. */
export interface Embedded {
  /** A new client connection to the in-process broker. */
  connect(): Broker;
  /** True when each function runs without any Deno permission. */
  readonly sandboxed: boolean;
  /** Drains each function, then ends its Web Worker and the broker. */
  stop(): Promise<void>;
}

// When the run is over nobody waits for unfinished work: the broker dies with it.
const GRACE_MS = 0;

function spawn(module: URL, task: string, sandbox: boolean): Worker {
  return new Worker(module, {
    type: "module",
    name: task,
    ...(sandbox && { deno: { permissions: "none" } }),
  } as WorkerOptions);
}

async function moduleExists(url: URL): Promise<boolean> {
  if (url.protocol !== "file:") return true;
  try {
    return (await Deno.stat(url)).isFile;
  } catch {
    return false;
  }
}

/**
 * Starts an in-process broker and one Web Worker per function, and resolves
 * once every function is consuming its queue.
 */
export async function startEmbedded(
  functions: EmbeddedFunction[],
  options: StartEmbeddedOptions = {},
): Promise<Embedded> {
  const dir = options.functionsDir ?? new URL("../functions/", import.meta.url);
  for (const { task } of functions) {
    if (!(await moduleExists(new URL(`${task}.ts`, dir)))) {
      throw new TypeError(
        `Cannot run '${task}' on the embedded broker as functions/${task}.ts does not exist: add it or use a broker where a worker serves it`,
      );
    }
  }
  const broker = new MemoryBroker();
  const workers: { worker: Worker; stopped: Promise<void>; dispose: () => Promise<void> }[] = [];
  let sandboxed = true;
  let failure: (error: Error) => void = () => {};
  const failed = new Promise<never>((_, reject) => failure = reject);
  failed.catch(() => {});

  for (const { task, queue } of functions) {
    const module = new URL(`${task}.ts`, dir);
    let worker: Worker;
    try {
      worker = spawn(module, task, sandboxed);
    } catch {
      // Without --unstable-worker-options Deno refuses per-worker permissions.
      sandboxed = false;
      worker = spawn(module, task, false);
    }
    const channel = new MessageChannel();
    const dispose = serveBrokerOverPort(channel.port1, broker.connect());
    const stopped = new Promise<void>((resolve) => {
      worker.addEventListener("message", (event: MessageEvent<EmbeddedEvent>) => {
        if (event.data.kind === "stopped") resolve();
        if (event.data.kind === "failed") {
          failure(new Error(`Cannot run '${task}' on the embedded broker: ${event.data.message}`));
          resolve();
        }
      });
      worker.addEventListener("error", (event) => {
        event.preventDefault();
        failure(new Error(`Cannot run '${task}' on the embedded broker: ${event.message}`));
        resolve();
      });
    });
    const start: EmbeddedStart = {
      kind: "start",
      queue,
      workerId: `${task}@embedded`,
      port: channel.port2,
      logLevel: options.logLevel ?? "warn",
      logFormat: options.logFormat ?? "text",
      concurrency: options.concurrency ?? 1,
      graceMs: GRACE_MS,
    };
    worker.postMessage(start, [channel.port2]);
    workers.push({ worker, stopped, dispose });
  }

  const stop = async () => {
    for (const { worker } of workers) worker.postMessage({ kind: "stop" });
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.all(workers.map((w) => w.stopped)),
      new Promise((resolve) => timer = setTimeout(resolve, GRACE_MS + 1000)),
    ]);
    clearTimeout(timer);
    for (const { worker, dispose } of workers) {
      worker.terminate();
      await dispose();
    }
    await broker.shutdown();
  };

  const probe = broker.connect();
  const deadline = Date.now() + (options.readyTimeoutMs ?? 10_000);
  try {
    for (const { task, queue } of functions) {
      while (((await probe.inspectQueue(queue))?.consumers ?? 0) === 0) {
        if (Date.now() > deadline) {
          throw new Error(
            `Cannot run '${task}' on the embedded broker as it did not start consuming: does functions/${task}.ts end with 'if (import.meta.main) await serve(...)'?`,
          );
        }
        await Promise.race([failed, new Promise((resolve) => setTimeout(resolve, 10))]);
      }
    }
  } catch (error) {
    await stop();
    throw error;
  } finally {
    await probe.close();
  }
  return { connect: () => broker.connect(), sandboxed, stop };
}
