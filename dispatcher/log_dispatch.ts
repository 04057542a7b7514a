/**
 * The dispatcher's structured log of a run: one line per task event (sent,
 * started, retrying, finished, timed out) with the task id (and, when
 * tracing is on, the trace and span ids of the dispatcher's span), for
 * machines to follow. The same format as the workers' logs (`core/log.ts`),
 * written to stderr at `--log-level` in `--log-format`.
 *
 * @module
 */

import type { Logger } from "../core/log.ts";
import type { DispatchListener } from "./dispatch_all.ts";

/** A {@linkcode DispatchListener} that logs each task event to `log`. */
export function logDispatch(log: Logger): DispatchListener {
  return {
    onSent(spec, taskId, trace) {
      log.info("Task sent", {
        task: spec.task,
        label: spec.label,
        queue: spec.queue,
        task_id: taskId,
        ...trace,
      });
    },
    onProgress(spec, progress) {
      const fields = {
        task: spec.task,
        label: spec.label,
        queue: spec.queue,
        task_id: progress.task_id ?? undefined,
        worker: progress.worker,
        attempt: progress.attempt,
      };
      if (progress.event === "started") log.info("Task started", fields);
      else {
        log.info("Task retrying", {
          ...fields,
          error: progress.error?.message,
          error_type: progress.error?.type,
          delay_ms: progress.delay_ms,
          max_retries: progress.max_retries,
        });
      }
    },
    onDone(outcome) {
      const { spec, reply } = outcome;
      const fields = {
        task: spec.task,
        label: spec.label,
        queue: spec.queue,
        task_id: outcome.taskId,
        status: outcome.status,
        passed: outcome.passed,
        latency_ms: Math.round(outcome.latencyMs * 1000) / 1000,
        problem: outcome.problem,
        ...outcome.trace,
      };
      if (!reply) {
        log.warn("Task timed out", { ...fields, timeout_ms: spec.timeoutMs });
        return;
      }
      const level = outcome.passed ? "info" : "warn";
      log[level]("Task finished", {
        ...fields,
        worker: reply.worker,
        attempt: reply.attempts,
        duration_ms: reply.duration_ms,
        error: reply.error?.message,
        error_type: reply.error?.type,
      });
    },
  };
}
