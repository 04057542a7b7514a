/**
 * What follows an attempt that failed: the task is handed back to its queue
 * (its sandbox restarted under it: not its fault), waits in a delay queue
 * for its next attempt (exponential backoff with jitter, while retries and
 * the deadline allow), or becomes a dead letter and the caller gets the
 * error.
 *
 * @module
 */

import type { Broker } from "../../core/broker/broker.ts";
import {
  type DeadLetterReason,
  DEADLINE_EXCEEDED,
  type TaskRequest,
} from "../../core/contract/mod.ts";
import type { FunctionInfo } from "../define_function.ts";
import type { Logger } from "../../core/log.ts";
import { policyFor, retryDelay, type Task } from "./delivery_facts.ts";
import type { WorkerMetrics } from "./observe.ts";
import type { HandlerOutcome } from "../handler_runner.ts";
import type { Settler } from "./settle.ts";
import type { EmitTaskEvent } from "./task_events.ts";
import { type Answer, elapsed, eventOf, logOf, type RunPlace, type TaskRun } from "./task_run.ts";

/** What the failure handler works with. */
export interface FailureContext {
  broker: Broker;
  settler: Settler;
  info: FunctionInfo;
  place: RunPlace;
  random: () => number;
  metrics: WorkerMetrics;
  log: Logger;
  emit: EmitTaskEvent;
  answer: Answer;
  /** The delays of the function's retry queues (those the worker could declare). */
  retryDelays: readonly number[];
  /** Hands a delivery back to the queue unfinished, counting toward no delivery limit. */
  handBack: (task: Task) => Promise<void>;
}

/** Settles a failed attempt; see the module documentation. */
export type HandleFailure = (
  run: TaskRun,
  request: TaskRequest,
  result: Extract<HandlerOutcome, { ok: false }>,
  deadline: number | null,
) => Promise<void>;

/** Makes the failure handler of a worker. */
export function createFailureHandler(context: FailureContext): HandleFailure {
  const { broker, settler, info, place, random, metrics, log, emit, answer } = context;
  const { retryDelays, handBack } = context;
  const stats = metrics.stats;

  const settle = (run: TaskRun) => {
    if (!run.task.abandoned) broker.ack(run.task.delivery);
  };

  /** Schedules the next attempt; false when the deadline comes first. */
  async function retry(
    run: TaskRun,
    request: TaskRequest,
    result: Extract<HandlerOutcome, { ok: false }>,
    deadline: number | null,
    maxRetries: number,
    delayMs: number,
  ): Promise<boolean> {
    const { delivery } = run.task;
    const { error } = result;
    const remainingMs = deadline === null ? undefined : deadline - Date.now();
    if (remainingMs !== undefined && remainingMs <= delayMs) return false;
    const span = run.traced.step("retry", { "task.delay_ms": delayMs });
    await settler.retry(delivery, {
      nextAttempt: run.attempt + 1,
      delayMs,
      sender: run.sender,
      remainingMs,
    }).finally(() => span.end());
    stats.retried++;
    logOf(run, log).info("Task failed; retrying", {
      status: "retry",
      error: error.message,
      error_type: error.type,
      duration_ms: elapsed(run),
      delay_ms: delayMs,
      retry: run.attempt,
      max_retries: maxRetries,
    });
    if (request.progress) {
      settler.progress(delivery, {
        task_id: run.taskId,
        task: request.task,
        event: "retry",
        worker: place.worker,
        queue: place.queue,
        attempt: run.attempt,
        at: new Date().toISOString(),
        error,
        delay_ms: delayMs,
        max_retries: maxRetries,
      }).catch(() => {});
    }
    run.traced.end("retry", error);
    emit({
      ...eventOf(run, place),
      kind: "task-retried",
      error_type: error.type,
      error: error.message,
      delay_ms: delayMs,
      duration_ms: elapsed(run),
    });
    settle(run);
    return true;
  }

  return async (run, request, result, deadline) => {
    const { delivery } = run.task;
    const { error } = result;
    if (result.requeue) {
      logOf(run, log).warn("Returning a task to the queue", { error: error.message });
      run.traced.end("requeued", error);
      return await handBack(run.task);
    }
    const policy = policyFor(info, request);
    let reason: DeadLetterReason = result.retryable ? "exhausted" : "non_retryable";
    if (result.retryable && run.attempt <= policy.maxRetries) {
      const delayMs = retryDelay(run.attempt, policy, random, retryDelays);
      if (await retry(run, request, result, deadline, policy.maxRetries, delayMs)) return;
      reason = "expired";
    }
    if (error.type === DEADLINE_EXCEEDED) reason = "expired";
    stats.failed++;
    const duration = elapsed(run);
    metrics.observe("error", duration);
    logOf(run, log).warn("Task failed", {
      status: "error",
      error: error.message,
      error_type: error.type,
      reason,
      duration_ms: duration,
    });
    const span = run.traced.step("dead letter", { "task.reason": reason });
    await settler.deadLetter(delivery, {
      reason,
      error,
      attempts: run.attempt,
      sender: run.sender,
    }).finally(() => span.end());
    await answer(run, "error", error);
    run.traced.end(reason, error);
    emit({
      ...eventOf(run, place),
      kind: "task-failed",
      reason,
      error_type: error.type,
      error: error.message,
      duration_ms: duration,
    });
    settle(run);
  };
}
