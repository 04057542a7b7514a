/**
 * The embedded mode: an in-process broker, and each function in a sandbox
 * of its own served by the same runtime as a worker process. `deno task
 * dispatch` runs on it when no RabbitMQ answers, so a machine with nothing
 * but Deno runs every scenario.
 *
 * The functions see their tasks and nothing else: no broker, no queue of
 * another function, no file, variable or network. Each sandbox (a Web
 * Worker with no permissions) runs in a `deno` process of its own that may
 * read only the function's folder and the runtime (`sandbox/process_host.ts`),
 * never in this one: the tools that run embedded may read every file, and
 * Deno checks a literal import in the function against the permissions of
 * the process that hosts it. So this process needs `--allow-run=deno`;
 * without it the embedded mode refuses to start (a `SandboxError`) rather
 * than run functions where they could read what the tool reads.
 *
 * @module
 */

import type { Broker } from "../core/broker/broker.ts";
import { MemoryBroker } from "../core/broker/mod.ts";
import { createLogger, type LogFormat, type LogLevel } from "../core/log.ts";
import { startSandbox } from "./sandbox/sandbox.ts";
import { type RunningWorker, startWorker } from "./worker/consumer.ts";
import type { Sandbox } from "./sandbox/sandbox.ts";
import { DISPATCHER_USER } from "../core/contract/users.ts";

/** A function to start: its name (its module is `<functionsDir>/<task>.ts`) and queue. */
export interface EmbeddedFunction {
  task: string;
  queue: string;
  /** Topic patterns of the events that run it (docs/events.md). */
  triggers?: readonly string[];
  /** The event type its results are emitted as. */
  emits?: string;
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
  /** Where function modules live. @default {the project's functions/} */
  functionsDir?: URL;
  /**
   * The broker user of the callers that `connect()` opens.
   * @default {"dispatcher"}
   */
  callerUser?: string;
}

/** A running embedded system. */
export interface Embedded {
  /** A new client connection to the in-process broker, as the caller's user. */
  connect(): Broker;
  /** Drains each function, then ends its sandbox and the broker. */
  stop(): Promise<void>;
}

/**
 * Starts an in-process broker and one sandboxed worker per function, and
 * resolves once every function consumes its queue. Throws a `SandboxError`
 * when this process may not run deno (`--allow-run=deno`) or a function
 * cannot load, and a `TypeError` for a missing function module.
 */
export async function startEmbedded(
  functions: EmbeddedFunction[],
  options: StartEmbeddedOptions = {},
): Promise<Embedded> {
  const dir = options.functionsDir ?? new URL("../functions/", import.meta.url);
  for (const { task } of functions) {
    const module = new URL(`${task}.ts`, dir);
    if (!(await isFile(module))) {
      throw new TypeError(
        `Cannot run '${task}' on the embedded broker as functions/${task}.ts does not exist: add it or use a broker where a worker serves it`,
      );
    }
  }
  const log = createLogger({
    level: options.logLevel ?? "warn",
    format: options.logFormat ?? "text",
    write: (line) => console.error(line),
  });
  const broker = new MemoryBroker();
  const sandboxes: (Sandbox | undefined)[] = [];
  const workers: RunningWorker[] = [];
  const stop = async () => {
    await Promise.all(workers.map((worker) => worker.stop(0)));
    await Promise.all(sandboxes.map((sandbox) => sandbox?.close()));
    await broker.shutdown();
  };
  try {
    // Each sandbox is a process to start: they start together.
    const starting = functions.map(({ task }, index) =>
      startSandbox({
        module: new URL(`${task}.ts`, dir),
        name: task,
        log: log.child({ function: task }),
        isolation: "process",
      }).then((sandbox) => sandboxes[index] = sandbox)
    );
    const failed = (await Promise.allSettled(starting)).find((s) => s.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
    for (const [index, { task, queue, triggers, emits }] of functions.entries()) {
      const sandbox = sandboxes[index]!;
      const subscribed = (triggers?.length ?? 0) > 0 || emits !== undefined;
      workers.push(
        await startWorker(sandbox, broker.connect(sandbox.info.name), {
          workerId: `${task}@embedded`,
          queue,
          concurrency: options.concurrency ?? 1,
          log,
          ...(subscribed && { triggers, emits }),
        }),
      );
    }
  } catch (error) {
    await stop();
    throw error;
  }
  const callerUser = options.callerUser ?? DISPATCHER_USER;
  return { connect: () => broker.connect(callerUser), stop };
}

async function isFile(url: URL): Promise<boolean> {
  if (url.protocol !== "file:") return true;
  try {
    return (await Deno.stat(url)).isFile;
  } catch {
    return false;
  }
}
