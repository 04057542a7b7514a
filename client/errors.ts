/**
 * The errors a call of the client throws, besides the broker's own
 * `BrokerUnavailableError`: the task failed, or its reply did not come in
 * time. Both carry what a caller needs to decide what to do next.
 *
 * @module
 */

import type { TaskProgress, TaskReply } from "../core/contract/mod.ts";

/** A function ran and replied with an error: every attempt its retry policy allowed failed. */
export class TaskFailedError extends Error {
  /** The function called. */
  readonly function: string;
  /** The task's id, as in the reply, the logs and any dead letter. */
  readonly taskId: string;
  /** The reply's stable error type, such as `SimulatedFailure` or `InvalidPayload`. */
  readonly errorType: string;
  /** The reply's error message. */
  readonly errorMessage: string;
  /** Attempts made, first included. */
  readonly attempts: number;
  /** The worker of the last attempt. */
  readonly worker: string;
  /** The whole reply. */
  readonly reply: TaskReply;

  /**
   * The failure of a call of `fn`, as its error `reply` says.
   *
   * @param fn The function called.
   * @param reply Its error reply.
   */
  constructor(fn: string, reply: TaskReply) {
    const type = reply.error?.type ?? "Error";
    const message = reply.error?.message ?? "";
    super(
      `Task ${reply.task_id} of ${fn} failed after ${reply.attempts} attempt${
        reply.attempts === 1 ? "" : "s"
      }: ${type}: ${message}`,
    );
    this.name = "TaskFailedError";
    this.function = fn;
    this.taskId = reply.task_id ?? "";
    this.errorType = type;
    this.errorMessage = message;
    this.attempts = reply.attempts;
    this.worker = reply.worker;
    this.reply = reply;
  }
}

/**
 * No reply came within the call's timeout. The request carried the same
 * deadline, so no worker starts it afterwards and the broker dead-letters it
 * (reason `expired`) if it is still queued.
 */
export class TaskTimeoutError extends Error {
  /** The function called. */
  readonly function: string;
  /** The task's id, as in the request and the workers' logs. */
  readonly taskId: string;
  /** How long the call waited. */
  readonly timeoutMs: number;
  /** The last progress event seen, when the call asked for them: how far it got. */
  readonly lastProgress: TaskProgress | undefined;

  /**
   * The end of a call of `fn` that got no reply in time.
   *
   * @param fn The function called.
   * @param details The task id, the timeout and the last progress event seen.
   */
  constructor(
    fn: string,
    details: { taskId: string; timeoutMs: number; lastProgress?: TaskProgress },
  ) {
    const seen = details.lastProgress
      ? `; last seen on ${details.lastProgress.worker}, attempt ${details.lastProgress.attempt}`
      : "";
    super(
      `Task ${details.taskId} of ${fn} got no reply within ${details.timeoutMs} ms${seen}: check that a worker serves it, or raise timeoutMs`,
    );
    this.name = "TaskTimeoutError";
    this.function = fn;
    this.taskId = details.taskId;
    this.timeoutMs = details.timeoutMs;
    this.lastProgress = details.lastProgress;
  }
}

/**
 * The call was cancelled (`TaskClient.cancel()`, `deno task cancel`): it
 * never started, or its running attempt was stopped. Its reply's error type
 * is `Cancelled`; a `TaskFailedError` as every error reply is.
 */
export class TaskCancelledError extends TaskFailedError {
  /**
   * The cancellation of a call of `fn`, as its `reply` says.
   *
   * @param fn The function called.
   * @param reply Its `Cancelled` reply.
   */
  constructor(fn: string, reply: TaskReply) {
    super(fn, reply);
    this.name = "TaskCancelledError";
  }
}
