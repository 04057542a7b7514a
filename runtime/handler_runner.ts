/**
 * Running a function's handler. A {@linkcode HandlerRunner} runs attempts
 * for the worker's consume pipeline and enforces their time limit: a
 * sandbox (`sandbox/sandbox.ts`, for workers and the embedded mode), or
 * {@linkcode inProcessRunner}, in this isolate, for unit tests of the
 * runtime. Either way {@linkcode runHandler} calls the handler once and
 * turns whatever happens into an outcome (the result as JSON text, or an
 * error with whether another attempt could help), so both behave alike.
 *
 * @module
 */

import {
  boundText,
  MAX_ERROR_MESSAGE_CHARS,
  MAX_ERROR_TYPE_CHARS,
  type TaskError,
} from "../core/contract/message.ts";
import { CANCELLED } from "../core/contract/cancel.ts";
import type { Logger } from "../core/log.ts";
import type { AttemptLimit, HandlerOutcome, HandlerRun } from "./attempt.ts";
import {
  type FunctionDefinition,
  type FunctionInfo,
  NonRetryableError,
  type TaskContext,
} from "./define_function.ts";

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
  /**
   * Stops the attempt of run `id` as its call was cancelled: its signal
   * fires, and it ends at once with the {@linkcode CANCELLED} error, whether
   * or not the handler heeds the signal. False when no such attempt runs.
   * A runner without it cannot stop a running attempt: its call ends when
   * the attempt does.
   */
  cancel?(id: number, message: string): boolean;
  /**
   * Tells `listener` when a handler holds the runner's thread (it cannot
   * start the tasks it was given), and when it is free again; see
   * {@linkcode HeldEvent}. A runner that cannot tell (in this isolate)
   * never calls it.
   */
  watchHeld?(listener: (event: HeldEvent) => void): void;
  /**
   * Ends the attempts it was given but has not started, as handed back
   * (`requeue: "hand_back"`), so that another replica can run them; returns
   * how many.
   */
  returnQueued?(): number;
  /** Ends the runner. */
  close(): Promise<void>;
}

/** How an attempt stopped by a cancellation ends: never retried. */
export function cancelledOutcome(message: string): HandlerOutcome {
  return {
    ok: false,
    retryable: false,
    error: { type: CANCELLED, message: boundText(message, MAX_ERROR_MESSAGE_CHARS) },
  };
}

/**
 * What a runner says of its thread: `held`, a task has waited long for it
 * while it was busy; then, once it started what waited, `held: false`,
 * with `byHandler` when a handler held it before its first `await` (the
 * function does CPU-bound work), rather than the machine's load.
 */
export type HeldEvent = { held: true } | { held: false; byHandler: boolean };

/** A failure of the handler's result, not of its work: retrying would not help. */
function invalidResult(detail: string): HandlerOutcome {
  return {
    ok: false,
    retryable: false,
    error: {
      type: "InvalidResult",
      message: boundText(
        `Cannot send the handler's result as JSON: ${detail}: return JSON-compatible data`,
        MAX_ERROR_MESSAGE_CHARS,
      ),
    },
  };
}

/** The JSON text of a handler's result, or the reason it has none. */
export function resultJsonOf(value: unknown): HandlerOutcome {
  if (value === undefined || value === null) return { ok: true, resultJson: "null" };
  // The common results need no general serialisation.
  if (typeof value === "string" || typeof value === "boolean") {
    return { ok: true, resultJson: JSON.stringify(value) };
  }
  if (typeof value === "number") {
    return { ok: true, resultJson: Number.isFinite(value) ? String(value) : "null" };
  }
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (error) {
    return invalidResult(describeThrown(error).message);
  }
  if (text === undefined) return invalidResult(`it is ${typeof value}`);
  return { ok: true, resultJson: text };
}

/** A bounded {@linkcode TaskError} for any thrown value, even one whose getters throw. */
export function describeThrown(thrown: unknown): TaskError {
  let type = "Error";
  let message: string;
  try {
    if (thrown instanceof Error) {
      type = typeof thrown.name === "string" && thrown.name ? thrown.name : "Error";
      message = String(thrown.message);
    } else {
      message = String(thrown);
    }
  } catch {
    message = "The handler threw a value that cannot be described";
  }
  return {
    type: boundText(type, MAX_ERROR_TYPE_CHARS),
    message: boundText(message, MAX_ERROR_MESSAGE_CHARS),
  };
}

/** Deno's words for a denied import, which it throws as a `TypeError`, not `NotCapable`. */
const DENIED_IMPORT = /^Requires (read|import|net) access to /;

/** Whether another attempt could fix what `thrown` reports. */
export function isRetryable(thrown: unknown): boolean {
  // A denied permission stays denied: retrying would only repeat it.
  if (thrown instanceof NonRetryableError || thrown instanceof Deno.errors.NotCapable) return false;
  return !(thrown instanceof TypeError && DENIED_IMPORT.test(thrown.message));
}

/**
 * Runs `definition`'s handler for `run`. Never rejects. `signal` is made on
 * first use (most handlers never read it), and the handler's log lines go
 * through `log`.
 */
export async function runHandler(
  definition: FunctionDefinition,
  run: HandlerRun,
  signal: () => AbortSignal,
  log: () => Logger,
): Promise<HandlerOutcome> {
  const context: TaskContext = {
    taskId: run.taskId,
    attempt: run.attempt,
    worker: run.worker,
    deadline: run.deadline,
    tick: run.tick ?? null,
    ...(run.event && { event: run.event }),
    get signal() {
      return signal();
    },
    get log() {
      return log();
    },
  };
  try {
    return resultJsonOf(await definition.handler(run.payload, context));
  } catch (thrown) {
    return { ok: false, error: describeThrown(thrown), retryable: isRetryable(thrown) };
  }
}

/**
 * An abort signal made on first use: most handlers never read theirs, and
 * at thousands of tasks a second the controllers they never use add up.
 */
export class LazyAbort {
  #controller: AbortController | undefined;
  #reason: unknown;
  #aborted = false;

  /** The signal; aborted at once if `abort()` came first. */
  get signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.#aborted) this.#controller.abort(this.#reason);
    }
    return this.#controller.signal;
  }

  /** Aborts the signal, now or when it is first read. */
  abort(reason: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#reason = reason;
    this.#controller?.abort(reason);
  }
}

/**
 * A runner that calls the handler in this isolate. It enforces the time
 * limit the same way, but cannot stop a handler that never yields: only the
 * sandbox can.
 */
export function inProcessRunner(definition: FunctionDefinition): HandlerRunner {
  const running = new Map<number, { abort: LazyAbort; cancel: (message: string) => void }>();
  return {
    info: definition,
    run(run, limit, log) {
      const abort = new LazyAbort();
      let stop!: (outcome: HandlerOutcome) => void;
      const stopped = new Promise<HandlerOutcome>((resolve) => stop = resolve);
      const timer = setTimeout(() => {
        abort.abort(new Error(limit.message));
        stop({ ok: false, retryable: true, error: { type: limit.type, message: limit.message } });
      }, limit.ms);
      running.set(run.id, {
        abort,
        cancel: (message) => {
          abort.abort(new Error(message));
          stop(cancelledOutcome(message));
        },
      });
      const done = runHandler(definition, run, () => abort.signal, log);
      return Promise.race([done, stopped]).finally(() => {
        clearTimeout(timer);
        running.delete(run.id);
      });
    },
    abortAll(reason) {
      for (const { abort } of running.values()) abort.abort(new Error(reason));
    },
    cancel(id, message) {
      const attempt = running.get(id);
      attempt?.cancel(message);
      return attempt !== undefined;
    },
    close() {
      return Promise.resolve();
    },
  };
}
