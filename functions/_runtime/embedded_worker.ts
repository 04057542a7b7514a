/**
 * Runs one function inside a Web Worker, for the embedded default. The Web
 * Worker's main module is the function's own module, whose
 * `if (import.meta.main) await serve(fn)` lands here (Deno sets
 * `import.meta.main` in a Web Worker's main module too). The function is
 * isolated from the dispatcher and from other functions and reaches the
 * in-process broker only through a port.
 *
 * @module
 */

import type { FunctionDefinition } from "./define_function.ts";
import { createLogger, type LogFormat, type LogLevel } from "./log.ts";
import { type Port, PortBroker } from "./port_broker.ts";
import { runWorker } from "./run_worker.ts";

/** The message that starts the function. */
export interface EmbeddedStart {
  kind: "start";
  queue: string;
  workerId: string;
  /** A port served by `serveBrokerOverPort`. */
  port: MessagePort;
  logLevel: LogLevel;
  logFormat: LogFormat;
  concurrency: number;
  graceMs: number;
}

/** What the Web Worker reports back. */
export type EmbeddedEvent = { kind: "failed"; message: string } | { kind: "stopped" };

/** Whether this code runs inside a Web Worker. */
export function inWebWorker(): boolean {
  const scope = (globalThis as { WorkerGlobalScope?: new () => unknown }).WorkerGlobalScope;
  return scope !== undefined && globalThis instanceof scope;
}

async function run(
  definition: FunctionDefinition,
  start: EmbeddedStart,
  signal: AbortSignal,
): Promise<void> {
  const broker = new PortBroker(start.port);
  let connected = false;
  await runWorker(definition, {
    connect: () => {
      if (connected) return Promise.reject(new TypeError("The embedded broker went away"));
      connected = true;
      return Promise.resolve(broker);
    },
    signal,
    workerId: start.workerId,
    queue: start.queue,
    concurrency: start.concurrency,
    graceMs: start.graceMs,
    log: createLogger({
      level: start.logLevel,
      format: start.logFormat,
      write: (line) => console.error(line),
    }),
  });
}

/**
 * Serves `definition` to the thread that started this Web Worker: waits for
 * its {@linkcode EmbeddedStart}, consumes through the port until told
 * `{ kind: "stop" }`, then reports `stopped` (or `failed`) and closes.
 */
export function serveEmbedded(definition: FunctionDefinition): Promise<never> {
  const scope = globalThis as unknown as Port & { close(): void };
  const controller = new AbortController();
  return new Promise<never>(() => {
    scope.addEventListener("message", (event: MessageEvent) => {
      const message = event.data as EmbeddedStart | { kind: "stop" };
      if (message.kind === "stop") {
        controller.abort();
        return;
      }
      if (message.kind !== "start") return;
      run(definition, message, controller.signal).then(
        () => scope.postMessage({ kind: "stopped" } satisfies EmbeddedEvent),
        (error: Error) =>
          scope.postMessage({ kind: "failed", message: error.message } satisfies EmbeddedEvent),
      );
    });
  });
}
