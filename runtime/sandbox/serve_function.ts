/**
 * The inside of a function's sandbox: a Web Worker that Deno starts with no
 * permissions at all, whose main module imports this first and the
 * function's module second. It runs the function's handler for each task
 * the runtime sends and reports the outcome; it never sees the broker, the
 * credentials or the runtime's memory.
 *
 * Importing this module first also takes away what would end the sandbox
 * from within (`Deno.exit()`, `close()`), keeps stray errors of a handler
 * from stopping it, and sends what the function writes to its console to
 * the runtime's log (`capture_output.ts`), attributed to the task that
 * wrote it and within the output budget (`output_budget.ts`), before any of
 * the function's code runs.
 *
 * @module
 */

import { AsyncLocalStorage } from "node:async_hooks";
import { boundText } from "../../core/contract/message.ts";
import type { LogFields, Logger, LogLevel } from "../../core/log.ts";
import type { HandlerRun } from "../attempt.ts";
import type { FunctionDefinition } from "../define_function.ts";
import { LazyAbort, runHandler } from "../handler_runner.ts";
import { captureOutput } from "./capture_output.ts";
import { batcher, type FromSandbox, type ToSandbox } from "./host.ts";
import { MAX_OUTPUT_LINE_CHARS, OutputBudget } from "./output_budget.ts";

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

/** The run whose handler is executing, across its awaits and timers. */
const currentRun = new AsyncLocalStorage<number>();
const budget = new OutputBudget((dropped) => send({ k: "dropped", ...dropped }));
const output = captureOutput((stream, text) => {
  const line = boundText(text, MAX_OUTPUT_LINE_CHARS);
  if (budget.admit(line.length)) send({ k: "out", id: currentRun.getStore(), stream, text: line });
});

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
  const emit = (level: LogLevel) => (msg: string, fields?: LogFields) => {
    const text = String(msg);
    if (budget.admit(text.length)) send({ k: "log", id, level, msg: text, fields });
  };
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
export function serveFunction(definition: unknown): void {
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
    currentRun.run(run.id, () => runHandler(fn, run, () => abort.signal, () => taskLogger(run.id)))
      .then((outcome) => {
        output.flush();
        running.delete(run.id);
        send({ k: "done", id: run.id, outcome });
      });
  };
  scope.addEventListener("message", (event) => {
    const batch = (event as MessageEvent).data as ToSandbox[];
    if (!Array.isArray(batch)) return;
    let runs = 0;
    let longest = 0;
    for (const message of batch) {
      if (message.k === "run") {
        runs++;
        const started = performance.now();
        start(message.run);
        longest = Math.max(longest, performance.now() - started);
      } else if (message.k === "abort") running.get(message.id)?.abort(new Error(message.message));
      else if (message.k === "ping") send({ k: "pong", n: message.n });
    }
    // Every handler of the batch has started (run to its first await): the
    // runtime sends the next batch only now, so that tasks behind a handler
    // that holds this thread wait in the runtime, where they can be handed
    // to another replica, rather than here, where nothing can reach them.
    if (runs > 0) send({ k: "took", ms: longest });
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
