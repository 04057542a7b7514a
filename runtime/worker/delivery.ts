/**
 * What happens to one delivery, from its arrival to its settlement: who
 * sent it and whether that sender may call the function, whether its
 * `reply_to` is a place for answers, how often it was delivered, what it
 * asks (in the native contract or Celery's), whether its deadline or eta
 * allows it to run now; then the attempt, and the reply it earns or what
 * `handle_failure.ts` makes of a failure. See `start_worker.ts` for the
 * order of settlement.
 *
 * @module
 */

import type { Broker, Delivery } from "../../core/broker/broker.ts";
import {
  type DeadLetterReason,
  DEADLINE_EXCEEDED,
  isOneJsonValue,
  replyToError,
  type TaskError,
} from "../../core/contract/mod.ts";
import type { FunctionInfo } from "../define_function.ts";
import type { Logger } from "../../core/log.ts";
import {
  attemptLimit,
  deliveriesOf,
  ETA_SLACK_MS,
  etaHop,
  fitsIn,
  type Task,
} from "./delivery_facts.ts";
import { createFailureHandler } from "./handle_failure.ts";
import type { WorkerMetrics } from "./observe.ts";
import { type ReadRequest, readRequest } from "./protocol.ts";
import { type AnsweredTask, AnsweredTasks, fingerprintOf } from "./answered_tasks.ts";
import type { HandlerRunner } from "./runner.ts";
import { createSenderCheck, type Sender, unauthenticatedError } from "./sender_check.ts";
import type { Settler } from "./settle.ts";
import { type EmitTaskEvent, NO_EVENTS } from "./task_events.ts";
import { NO_TRACE } from "./tracing.ts";
import {
  createAnswer,
  elapsed,
  eventOf,
  idsOf,
  logOf,
  type RunPlace,
  startRun,
  type TaskRun,
} from "./task_run.ts";

/** What the handler of a worker's deliveries works with. */
export interface DeliveryContext {
  runner: HandlerRunner;
  broker: Broker;
  settler: Settler;
  info: FunctionInfo;
  queue: string;
  workerId: string;
  queueType: "classic" | "quorum";
  deliveryLimit: number;
  maxBytes: number;
  /** Broker users whose requests run; `*` for any. */
  senders: ReadonlySet<string>;
  random: () => number;
  metrics: WorkerMetrics;
  log: Logger;
  /** Publishes task events; {@linkcode NO_EVENTS} when they are off. */
  emit: EmitTaskEvent;
  /** The tasks this process answered, to answer copies of their requests without running them. */
  answered: AnsweredTasks;
  /** The delays of the function's retry queues (those the worker could declare). */
  retryDelays: readonly number[];
  /** The longest wait a Celery eta may ask for. */
  maxEtaMs?: number;
  /** Hands a delivery back to the queue unfinished, counting toward no delivery limit. */
  handBack: (task: Task) => Promise<void>;
}

/** Handles deliveries; see the module documentation. */
export interface DeliveryHandler {
  /** Settles one delivery; rejects only when publishing its outcome failed. */
  process(task: Task): Promise<void>;
  /** Who sent a delivery, and whether the function accepts it. */
  senderOf(delivery: Delivery, celery: boolean): Sender;
}

/** How a request that never ran is refused. */
interface Refusal {
  /** No reply: the sender may not call the function, so it learns nothing. */
  silent?: boolean;
  deliveries?: number;
  dropBody?: boolean;
}

/** Makes the handler of a worker's deliveries. */
export function createDeliveryHandler(context: DeliveryContext): DeliveryHandler {
  const { runner, broker, settler, info, queue, workerId, queueType, deliveryLimit } = context;
  const { maxBytes, senders, metrics, log, emit, answered, retryDelays, maxEtaMs } = context;
  const stats = metrics.stats;
  const place: RunPlace = { function: info.name, queue, worker: workerId };
  const senderOf = createSenderCheck(queue, broker.user, senders);
  const answer = createAnswer(settler, place, answered, (run, error) => {
    stats.repliesRefused++;
    logOf(run, log).warn("The broker refused the reply; the caller will not get it", {
      error: error.message,
    });
  });
  const handleFailure = createFailureHandler({ ...context, place, answer });
  const events = emit !== NO_EVENTS;
  let nextRun = 1;

  function settle(run: TaskRun): void {
    if (!run.task.abandoned) broker.ack(run.task.delivery);
  }

  /** Dead-letters and (unless `silent`) answers a request that never ran. */
  async function refuse(
    run: TaskRun,
    reason: DeadLetterReason,
    error: TaskError,
    extra: Refusal = {},
  ): Promise<void> {
    logOf(run, log).warn(
      reason === "rejected" ? "Rejected a request that breaks the contract" : "Refused a request",
      {
        status: reason,
        reason,
        error: error.message,
        error_type: error.type,
        sender: run.sender,
        duration_ms: elapsed(run),
      },
    );
    const span = run.traced.step("dead letter", { "task.reason": reason });
    await settler.deadLetter(run.task.delivery, {
      reason,
      error,
      attempts: run.attempt,
      sender: run.sender,
      deliveries: extra.deliveries,
      dropBody: extra.dropBody,
    }).finally(() => span.end());
    if (!extra.silent) await answer(run, "error", error);
    run.traced.end(reason, error);
    emit({ ...eventOf(run, place), kind: "task-rejected", reason, error_type: error.type });
    settle(run);
  }

  async function process(task: Task): Promise<void> {
    const { delivery } = task;
    const run = startRun(task, place);
    const judged = senderOf(delivery, run.celery);
    run.sender = judged.sender;
    if (!judged.allowed) {
      stats.unauthenticated++;
      return await refuse(run, "unauthenticated", unauthenticatedError(judged, senders), {
        silent: true,
      });
    }
    // Whoever sent it chose reply_to: the worker publishes there as its own
    // user, so only to a place made for answers, never to a queue.
    const badReplyTo = replyToError(delivery.properties.replyTo, run.celery ? "celery" : "reply");
    if (badReplyTo) {
      stats.invalidReplyTo++;
      return await refuse(run, "invalid_reply_to", badReplyTo, { silent: true });
    }
    const { sender } = judged;
    const deliveries = deliveriesOf(delivery, broker.user);
    if (queueType === "quorum" && deliveries >= deliveryLimit) {
      stats.failed++;
      return await refuse(run, "delivery_limit", {
        type: "DeliveryLimit",
        message:
          `Cannot run the request again as it was delivered ${deliveries} times and never settled: the worker died while running it each time (see its logs)`,
      }, { deliveries });
    }
    const read = readRequest(delivery, run.celery, info, { maxBytes, maxEtaMs });
    if (!read.ok) {
      stats.rejected++;
      run.taskName = read.task ?? null;
      return await refuse(run, "rejected", read.error, {
        dropBody: read.error.type === "MessageTooLarge",
      });
    }
    run.taskName = read.request.task;
    run.celeryReply = read.celery;
    if (read.attempt !== undefined) run.attempt = read.attempt;
    if (run.celery || run.taskId === null) return await proceed(run, read);
    // A copy of a request this process answered (redelivered after a lost
    // ack, or sent again by a caller that lost its node) gets that answer.
    const key = AnsweredTasks.keyOf(sender, run.taskId);
    const fingerprint = fingerprintOf(delivery);
    // Claimed at once unless a copy of it runs now: no await, no extra turn.
    const claiming = answered.claim(key, fingerprint);
    const claim = claiming instanceof Promise ? await claiming : claiming;
    if ("answer" in claim) return await answerAgain(run, claim.answer);
    run.record = { key, fingerprint };
    try {
      await proceed(run, read);
    } finally {
      claim.release();
    }
  }

  /** Sends the recorded answer of a request this process already answered, and settles the copy. */
  async function answerAgain(run: TaskRun, earlier: AnsweredTask): Promise<void> {
    stats.answeredAgain++;
    await answer.again(run, earlier);
    logOf(run, log).info("Answered a repeated request from the record, without running it", {
      status: earlier.reply.status,
      redelivered: run.task.delivery.redelivered,
    });
    run.traced.end("answered_again");
    settle(run);
  }

  /** Runs a request that may run: unless past its deadline or before its eta. */
  async function proceed(run: TaskRun, read: ReadRequest): Promise<void> {
    const { task, sender } = run;
    const { delivery } = task;
    const { request } = read;
    const deadline = request.deadline ?? null;
    if (deadline !== null && deadline <= Date.now()) {
      stats.expired++;
      return await refuse(run, "expired", {
        type: DEADLINE_EXCEEDED,
        message: `Cannot start the task as its deadline passed ${
          Date.now() - deadline
        } ms ago: the caller no longer waits for it`,
      });
    }
    if (read.eta !== undefined && read.eta - Date.now() > ETA_SLACK_MS) {
      // Not yet: it waits in a delay queue, as a retry does, holding no
      // worker; in hops of the longest delay that does not overshoot.
      await settler.retry(delivery, {
        nextAttempt: run.attempt,
        delayMs: etaHop(read.eta - Date.now(), retryDelays),
        sender,
        remainingMs: deadline === null ? undefined : deadline - Date.now(),
      });
      logOf(run, log).info("Task waits for its eta", { eta: new Date(read.eta).toISOString() });
      run.traced.end("eta");
      settle(run);
      return;
    }

    log.debug("Task started", idsOf(run));
    if (events) emit({ ...eventOf(run, place), kind: "task-started" });
    if (request.progress) {
      settler.progress(delivery, {
        task_id: run.taskId,
        task: request.task,
        event: "started",
        worker: workerId,
        queue,
        attempt: run.attempt,
        at: run.startedAt,
      }).catch((error) => logOf(run, log).debug("Could not send a progress event", { error }));
    }
    const result = await runner.run(
      {
        id: nextRun++,
        payload: request.payload,
        taskId: run.taskId,
        attempt: run.attempt,
        worker: workerId,
        deadline,
      },
      attemptLimit(read.timeoutMs, deadline),
      () => logOf(run, log),
    );
    if (task.abandoned) return;
    if (result.ok && !fitsIn(result.resultJson, maxBytes)) {
      return await handleFailure(run, request, {
        ok: false,
        retryable: false,
        error: {
          type: "ResultTooLarge",
          message:
            `Cannot send the handler's result as it takes more than ${maxBytes} bytes: return less, or store it elsewhere and return where`,
        },
      }, deadline);
    }
    // The result comes from the function's sandbox, which may be hostile:
    // anything but one JSON value could add or override the reply's fields.
    if (result.ok && !isOneJsonValue(result.resultJson)) {
      return await handleFailure(run, request, {
        ok: false,
        retryable: false,
        error: {
          type: "InvalidResult",
          message:
            "Cannot send the handler's result as its sandbox sent text that is not one JSON value: return JSON-compatible data, and leave JSON and postMessage as they are",
        },
      }, deadline);
    }
    if (!result.ok) return await handleFailure(run, request, result, deadline);
    stats.succeeded++;
    const duration = elapsed(run);
    metrics.observe("success", duration);
    // The reply goes first: the caller waits for it, not for the log line.
    const replied = answer(run, "success", null, result.resultJson);
    if (run.logger) run.logger.info("Task succeeded", { status: "success", duration_ms: duration });
    else if (run.traced === NO_TRACE) {
      // The line of nearly every task, made without the objects idsOf() spreads.
      log.info("Task succeeded", {
        task_id: run.taskId ?? undefined,
        attempt: run.attempt,
        status: "success",
        duration_ms: duration,
      });
    } else log.info("Task succeeded", { ...idsOf(run), status: "success", duration_ms: duration });
    await replied;
    run.traced.end("success");
    if (events) emit({ ...eventOf(run, place), kind: "task-succeeded", duration_ms: duration });
    settle(run);
  }

  return { process, senderOf };
}
