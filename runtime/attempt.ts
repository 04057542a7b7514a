/**
 * One attempt of one task, as it crosses from the worker's consume pipeline
 * to whatever runs the handler (a sandbox, or the in-process runner of unit
 * tests) and back: what goes in, how long it may take, and how it ended.
 * Plain data only: it travels to a function's sandbox as a message.
 *
 * @module
 */

import type { TaskError } from "../core/contract/message.ts";
import type { Payload } from "../core/contract/request.ts";
import type { EventAttributes } from "../core/contract/cloud_events.ts";

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
  /** The schedule's tick it runs for (ISO 8601), when the scheduler sent it. */
  tick?: string;
  /** The attributes of the event that triggered it, for a run of an event. */
  event?: EventAttributes;
}

/** How long an attempt may run, and the error it ends with past that. */
export interface AttemptLimit {
  ms: number;
  /** Type and message of the error, such as `TaskTimeout`. */
  type: string;
  message: string;
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
     * Set when the attempt was cut off and its delivery goes back to the
     * queue, using no attempt. `hand_back`: the task is not at fault (its
     * sandbox was restarted for another task's hung handler, or the worker
     * stops), so no delivery limit counts the return. `failed_delivery`:
     * its sandbox crashed while it ran, which it may have caused, so the
     * return counts as a failed delivery, and a task that crashes its
     * sandbox every time reaches the delivery limit instead of looping.
     */
    requeue?: "hand_back" | "failed_delivery";
  };
