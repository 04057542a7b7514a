/**
 * The inside of a function's sandbox: a Web Worker that Deno starts with no
 * permissions at all, whose main module imports this first and the
 * function's module second. It runs the function's handler for each task
 * the runtime sends and reports the outcome; it never sees the broker, the
 * credentials or the runtime's memory.
 *
 * Importing this module first also takes away what would end the sandbox
 * from within (`Deno.exit()`, `close()`), and keeps stray errors of a
 * handler from stopping it, before any of the function's code runs.
 *
 * @module
 */

import type { FunctionDefinition } from "../define_function.ts";
import type { LogFields, Logger, LogLevel } from "../../core/log.ts";
import { LazyAbort } from "./lazy_abort.ts";
import { type HandlerRun, runHandler } from "./run_handler.ts";
import { batcher, type FromSandbox, type ToSandbox } from "./sandbox_protocol.ts";

const scope = globalThis as unknown as {
  postMessage(message: unknown): void;
  addEventListener(type: string, listener: (event: Event) => void): void;
};
// Kept before the function's code runs, which could replace the global.
const postMessage = scope.postMessage.bind(globalThis);
const send = batcher<FromSandbox>((batch) => postMessage(batch));

function refuse(what: string): () => never {
  return () => {
    throw new Deno.errors.NotCapable(
      `${what} is not allowed in a function's sandbox: return a result or throw an error instead`,
    );
  };
}

function lock(target: object, key: string, value: unknown): void {
  try {
    Object.defineProperty(target, key, { value, writable: false, configurable: false });
  } catch {
    // Already locked (a second import in the same sandbox).
  }
}

lock(Deno, "exit", refuse("Deno.exit()"));
lock(globalThis, "close", refuse("close()"));
lock(Object.getPrototypeOf(globalThis), "close", refuse("close()"));

// An error a handler leaves behind (a throw in a timer, a promise nobody
// awaits) would end the sandbox and every task in it: report it instead.
scope.addEventListener("error", (event) => {
  event.preventDefault();
  send({ k: "stray", message: String((event as ErrorEvent).message).slice(0, 512) });
});
scope.addEventListener("unhandledrejection", (event) => {
  event.preventDefault();
  const reason = (event as PromiseRejectionEvent).reason;
  send({ k: "stray", message: String(reason?.message ?? reason).slice(0, 512) });
});

function taskLogger(id: number): Logger {
  const emit = (level: LogLevel) => (msg: string, fields?: LogFields) =>
    send({ k: "log", id, level, msg: String(msg), fields });
  const logger: Logger = {
    debug: emit("debug"),
    info: emit("info"),
    warn: emit("warn"),
    error: emit("error"),
    child: () => logger,
  };
  return logger;
}

/**
 * Serves `definition` (the function module's default export) to the
 * runtime until the sandbox is terminated. Called by the sandbox's main
 * module; see `sandbox.ts`.
 */
export function hostFunction(definition: unknown): void {
  const fn = definition as FunctionDefinition | undefined;
  if (typeof fn?.handler !== "function") {
    send({
      k: "failed",
      message:
        "the module has no default export made by defineFunction(): add 'export default defineFunction({...})'",
    });
    return;
  }
  const running = new Map<number, LazyAbort>();
  const start = (run: HandlerRun) => {
    const abort = new LazyAbort();
    running.set(run.id, abort);
    runHandler(fn, run, () => abort.signal, () => taskLogger(run.id)).then((outcome) => {
      running.delete(run.id);
      send({ k: "done", id: run.id, outcome });
    });
  };
  scope.addEventListener("message", (event) => {
    const batch = (event as MessageEvent).data as ToSandbox[];
    if (!Array.isArray(batch)) return;
    for (const message of batch) {
      if (message.k === "run") start(message.run);
      else if (message.k === "abort") running.get(message.id)?.abort(new Error(message.message));
      else if (message.k === "ping") send({ k: "pong", n: message.n });
    }
  });
  let info;
  try {
    // Plain data only: the runtime checks every field of it.
    info = JSON.parse(JSON.stringify({
      name: fn.name,
      queue: fn.queue,
      retry: fn.retry,
      timeoutMs: fn.timeoutMs,
      allowedSenders: fn.allowedSenders,
      celeryNames: fn.celeryNames,
    }));
  } catch (error) {
    send({ k: "failed", message: `its definition is not plain data: ${error}` });
    return;
  }
  send({ k: "ready", info });
}
