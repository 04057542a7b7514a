/**
 * Runs a function's handler once and turns whatever happens into an
 * outcome: the result as JSON text, or an error with whether another attempt
 * could help. The same code runs inside a function's sandbox and in the
 * in-process runner of the unit tests, so both behave alike.
 *
 * @module
 */

import {
  boundText,
  MAX_ERROR_MESSAGE_CHARS,
  MAX_ERROR_TYPE_CHARS,
  type TaskError,
} from "../core/contract/message.ts";
import type { Payload } from "../core/contract/request.ts";
import { type FunctionDefinition, NonRetryableError, type TaskContext } from "./define_function.ts";
import type { Logger } from "../core/log.ts";

/** One attempt of one task, as the runtime hands it to a runner. */
export interface HandlerRun {
  /** Identifies the run between the runtime and its runner. */
  id: number;
  payload: Payload;
  taskId: string | null;
  attempt: number;
  worker: string;
  /** When the caller stops waiting (ms since the epoch), or null. */
  deadline: number | null;
}

/** How an attempt ended. */
export type HandlerOutcome =
  | { ok: true; resultJson: string }
  | {
    ok: false;
    error: TaskError;
    /** Whether another attempt could succeed. */
    retryable: boolean;
    /**
     * Set when the task itself is not at fault (its sandbox was restarted
     * under it): its delivery goes back to the queue without using an attempt.
     */
    requeue?: boolean;
  };

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
