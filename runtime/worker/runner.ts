/**
 * A runner runs a function's handler for the worker runtime and enforces
 * its time limit: in the function's sandbox (`sandbox.ts`, for workers and
 * the embedded mode), or in this isolate ({@linkcode inProcessRunner}, for
 * unit tests of the runtime).
 *
 * @module
 */

import type { FunctionDefinition, FunctionInfo } from "../define_function.ts";
import type { Logger } from "../../core/log.ts";
import { LazyAbort } from "./lazy_abort.ts";
import { type HandlerOutcome, type HandlerRun, runHandler } from "../handler_runner.ts";

/** Runs handlers; see the module documentation. */
export interface HandlerRunner {
  /** What the function says of itself, checked. */
  readonly info: FunctionInfo;
  /**
   * Runs one attempt and resolves with its outcome, never rejecting: an
   * attempt still running after `limitMs` is aborted and ends with the
   * `timeout` error at once, whether or not the handler heeds its signal.
   * `log` gives the attempt's logger, made only if the handler writes a line.
   */
  run(run: HandlerRun, limit: AttemptLimit, log: () => Logger): Promise<HandlerOutcome>;
  /** Aborts every running attempt with `reason` (the worker stops). */
  abortAll(reason: string): void;
  /** Ends the runner. */
  close(): Promise<void>;
}

/** How long an attempt may run, and the error it ends with past that. */
export interface AttemptLimit {
  ms: number;
  /** Type and message of the error, such as `TaskTimeout`. */
  type: string;
  message: string;
}

/**
 * A runner that calls the handler in this isolate. It enforces the time
 * limit the same way, but cannot stop a handler that never yields: only the
 * sandbox can.
 */
export function inProcessRunner(definition: FunctionDefinition): HandlerRunner {
  const running = new Set<LazyAbort>();
  return {
    info: definition,
    run(run, limit, log) {
      const abort = new LazyAbort();
      running.add(abort);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timedOut = new Promise<HandlerOutcome>((resolve) => {
        timer = setTimeout(() => {
          abort.abort(new Error(limit.message));
          resolve({
            ok: false,
            retryable: true,
            error: { type: limit.type, message: limit.message },
          });
        }, limit.ms);
      });
      const done = runHandler(definition, run, () => abort.signal, log);
      return Promise.race([done, timedOut]).finally(() => {
        clearTimeout(timer);
        running.delete(abort);
      });
    },
    abortAll(reason) {
      for (const abort of running) abort.abort(new Error(reason));
    },
    close() {
      return Promise.resolve();
    },
  };
}
