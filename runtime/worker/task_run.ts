/**
 * One delivery while a worker handles it: what every step of its handling
 * reads (its ids, attempt, sender, trace, start time) and the few helpers
 * they share, such as its log and its reply.
 *
 * @module
 */

import { PublishRefusedError } from "../../core/broker/broker.ts";
import {
  encodeCeleryReply,
  isCeleryMessage,
  type TaskError,
  type TaskReply,
} from "../../core/contract/mod.ts";
import { isoNow, type Logger } from "../../core/log.ts";
import type { AnsweredTask, AnsweredTasks } from "./answered_tasks.ts";
import { attemptOf, sentAtOf, type Task, taskIdOf } from "./delivery_facts.ts";
import type { Settler } from "./settle.ts";
import type { TaskEvent } from "../../core/contract/mod.ts";
import { tracingEnabled } from "../../core/trace_context.ts";
import { NO_TRACE, startTaskTrace, type TaskTrace } from "./tracing.ts";

/** A delivery being handled, and what its steps share. */
export interface TaskRun {
  task: Task;
  taskId: string | null;
  attempt: number;
  celery: boolean;
  /** The function the request named, once known. */
  taskName: string | null;
  /** Who sent it, when known. */
  sender?: string;
  /** For a Celery request: the id its reply carries, and whether it wants one. */
  celeryReply?: { id: string; ignoreResult: boolean };
  /** When it started, as ISO 8601. */
  startedAt: string;
  started: number;
  traced: TaskTrace;
  logger?: Logger;
  /** Set while this request holds its task id in the record of answers. */
  record?: { key: string; fingerprint: string };
}

/** Where a worker's task runs happen: the function, its queue, and the worker. */
export interface RunPlace {
  function: string;
  queue: string;
  worker: string;
}

/** Starts the handling of `task`. */
export function startRun(task: Task, place: RunPlace): TaskRun {
  const { delivery } = task;
  const attempt = attemptOf(delivery);
  const taskId = taskIdOf(delivery);
  return {
    task,
    taskId,
    attempt,
    celery: isCeleryMessage(delivery),
    taskName: null,
    startedAt: isoNow(),
    started: performance.now(),
    traced: tracingEnabled()
      ? startTaskTrace(
        delivery.properties.headers,
        { ...place, taskId, attempt },
        sentAtOf(delivery),
      )
      : NO_TRACE,
  };
}

/** Milliseconds since the run started, to the microsecond. */
export function elapsed(run: TaskRun): number {
  return Math.round((performance.now() - run.started) * 1000) / 1000;
}

/** The ids a run's log lines carry. */
export function idsOf(run: TaskRun): Record<string, unknown> {
  return { task_id: run.taskId ?? undefined, attempt: run.attempt, ...run.traced.ids };
}

/** The run's logger, made on first use: most runs log one line, with its own fields. */
export function logOf(run: TaskRun, log: Logger): Logger {
  return run.logger ??= log.child({ ...idsOf(run), ...(run.celery && { protocol: "celery" }) });
}

/** The fields of a run's task events. */
export function eventOf(run: TaskRun, place: RunPlace): Omit<TaskEvent, "at" | "kind"> {
  return {
    ...place,
    task_id: run.taskId,
    attempt: run.attempt,
    trace_id: run.traced.ids.trace_id,
  };
}

/** Sends a run's reply, if its request asked for one. */
export type Answer = {
  (run: TaskRun, status: "success", error: null, resultJson: string): Promise<void>;
  (run: TaskRun, status: "error", error: TaskError): Promise<void>;
  /** Sends the recorded answer of a request this process answered before. */
  again(run: TaskRun, earlier: AnsweredTask): Promise<void>;
};

/**
 * Makes the function that answers a run: in the native contract, or as
 * Celery's rpc:// backend expects; inside a `reply` span when traced. A
 * native answer is kept in `answered` while the run holds its record.
 *
 * A reply the broker refuses (the caller's queue is full, or refuses more)
 * is the caller's loss: it goes to `refused` and the answer resolves, so the
 * request is settled and never run again for it. Any other failure (the
 * connection went) rejects.
 */
export function createAnswer(
  settler: Settler,
  place: RunPlace,
  answered: AnsweredTasks,
  refused: (run: TaskRun, error: PublishRefusedError) => void,
): Answer {
  const tolerate = (run: TaskRun) => (error: unknown) => {
    if (!(error instanceof PublishRefusedError)) throw error;
    refused(run, error);
  };
  const send = (
    run: TaskRun,
    status: "success" | "error",
    error: TaskError | null,
    resultJson?: string,
  ): Promise<void> => {
    const { delivery } = run.task;
    if (!delivery.properties.replyTo) return Promise.resolve();
    if (run.celery) {
      const reply = run.celeryReply;
      if (reply?.ignoreResult) return Promise.resolve();
      const id = reply?.id ?? String(delivery.properties.headers?.id ?? run.taskId ?? "");
      return settler.answer(
        delivery,
        encodeCeleryReply(
          id,
          status === "success"
            ? { ok: true, resultJson: resultJson! }
            : { ok: false, error: error! },
        ),
      ).catch(tolerate(run));
    }
    const reply: TaskReply = {
      task_id: run.taskId,
      task: run.taskName,
      status,
      result: null,
      error,
      worker: place.worker,
      queue: place.queue,
      attempts: run.attempt,
      started_at: run.startedAt,
      finished_at: isoNow(),
      duration_ms: elapsed(run),
    };
    // Kept before it is sent: should sending fail, the request comes back
    // and is answered from the record, not run again.
    if (run.record) {
      answered.remember(run.record.key, run.record.fingerprint, { reply, resultJson });
    }
    return settler.reply(delivery, reply, resultJson).catch(tolerate(run));
  };
  const answer = ((
    run: TaskRun,
    status: "success" | "error",
    error: TaskError | null,
    resultJson?: string,
  ) => {
    if (run.traced === NO_TRACE) return send(run, status, error, resultJson);
    const span = run.traced.step("reply", { "task.status": status });
    return send(run, status, error, resultJson).finally(() => span.end());
  }) as Answer;
  answer.again = (run, earlier) =>
    settler.reply(run.task.delivery, earlier.reply, earlier.resultJson).catch(tolerate(run));
  return answer;
}
