/**
 * What happens to one delivery, from its arrival to its settlement: who
 * sent it and whether that sender may call the function, whether its
 * `reply_to` is a place for answers, how often it was delivered, what it
 * asks (in the protocol it speaks, `protocols/`), whether its deadline or
 * eta allows it to run now; then the attempt, and the reply it earns. A
 * failed attempt is handed back to its queue (its sandbox was restarted
 * under it for another task: not its fault, and no delivery limit counts
 * it), returned as a failed delivery (its sandbox crashed under it, maybe
 * by its doing: the delivery limit counts it), waits in a delay queue for
 * its next attempt (exponential backoff with jitter, while retries and the
 * deadline allow), or becomes a dead letter and the caller gets the error.
 * See `consumer.ts` for the order of settlement.
 *
 * @module
 */

import { type Broker, type Delivery, PublishRefusedError } from "../../core/broker/broker.ts";
import {
  CANCELLED,
  type CancelStatus,
  type DeadLetterReason,
  DEADLINE_EXCEEDED,
  isOneJsonValue,
  mayCancel,
  REPLAYED_SENDER_HEADER,
  replyToError,
  type TaskError,
  type TaskEvent,
  type TaskRequest,
  tickOf,
} from "../../core/contract/mod.ts";
import { isoNow, type Logger } from "../../core/log.ts";
import { tracingEnabled } from "../../core/trace_context.ts";
import type { HandlerOutcome } from "../attempt.ts";
import type { FunctionInfo } from "../define_function.ts";
import type { HandlerRunner } from "../handler_runner.ts";
import { type AnsweredTask, AnsweredTasks, fingerprintOf } from "./answered_tasks.ts";
import type { CancelledCalls } from "./cancellations.ts";
import {
  attemptLimit,
  attemptOf,
  deliveriesOf,
  ETA_SLACK_MS,
  etaHop,
  fitsIn,
  policyFor,
  retryDelay,
  sentAtOf,
  taskIdOf,
} from "./delivery_facts.ts";
import {
  type EmitTaskEvent,
  NO_EVENTS,
  NO_TRACE,
  startTaskTrace,
  type TaskTrace,
  type WorkerMetrics,
} from "./observe.ts";
import {
  type AnswerFacts,
  createChainEmitter,
  protocolFor,
  type ReadRequest,
  untriggeredError,
  type WorkerProtocol,
} from "./protocols/mod.ts";
import { createSenderCheck, type Sender, unauthenticatedError } from "./sender_check.ts";
import { createSettler } from "./settle.ts";

/** A delivery being handled. */
export interface Task {
  delivery: Delivery;
  /** Set once the message went back to the broker unfinished. */
  abandoned: boolean;
  done: Promise<void>;
}

/** A delivery being handled, and what its steps share. */
interface TaskRun {
  task: Task;
  taskId: string | null;
  attempt: number;
  protocol: WorkerProtocol;
  /** The function the request named, once known. */
  taskName: string | null;
  /** Who sent it, when known. */
  sender?: string;
  /** The request, once read. */
  read?: ReadRequest;
  /** When it started, as ISO 8601. */
  startedAt: string;
  started: number;
  traced: TaskTrace;
  logger?: Logger;
  /** Set while this request holds its task id in the record of answers. */
  record?: { key: string; fingerprint: string };
  /** Set once a cancellation stopped its attempt: the broker user who cancelled it. */
  cancelledBy?: string;
}

/** An attempt running now, as a cancellation finds it. */
interface RunningAttempt {
  run: TaskRun;
  runId: number;
}

/**
 * The trace context an event emitted by a run carries on: the run's attempt
 * span when traced, so that the next function's spans are its children;
 * else the one the delivery came with, if any.
 */
function traceparentOf(run: TaskRun, delivery: Delivery): string | undefined {
  const { trace_id: traceId, span_id: spanId } = run.traced.ids;
  if (traceId && spanId) return `00-${traceId}-${spanId}-01`;
  const value = delivery.properties.headers?.traceparent;
  return typeof value === "string" && value.length <= 128 ? value : undefined;
}

/** Milliseconds since the run started, to the microsecond. */
function elapsed(run: TaskRun): number {
  return Math.round((performance.now() - run.started) * 1000) / 1000;
}

/** The ids a run's log lines carry. */
function idsOf(run: TaskRun): Record<string, unknown> {
  return { task_id: run.taskId ?? undefined, attempt: run.attempt, ...run.traced.ids };
}

/** Options for {@linkcode createDeliveryHandler}: the worker's settings, resolved. */
export interface DeliveryHandlerOptions {
  runner: HandlerRunner;
  broker: Broker;
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
  /**
   * The tasks this process answered, to answer copies of their requests
   * without running them.
   * @default {new AnsweredTasks()}
   */
  answered?: AnsweredTasks;
  /** The cancellations this worker read: a cancelled call never starts. */
  cancelled?: CancelledCalls;
  /** The delays of the function's retry queues (those the worker could declare). */
  retryDelays: readonly number[];
  /** The longest wait an eta may ask for. */
  maxEtaMs?: number;
  /** How long a delivery whose outcome could not be published waits before it goes back. */
  returnDelayMs: number;
  /** The event type each success is emitted as, for a function that declares `emits` (`protocols/chain.ts`). */
  emits?: string;
  /**
   * The function's triggers now: an event that came through a binding none
   * of them makes is refused (`untriggered`).
   * @default {[]}
   */
  triggers?: readonly string[];
}

/** Handles deliveries; see the module documentation. */
export interface DeliveryHandler {
  /**
   * Settles one delivery. Never rejects: when its outcome cannot be
   * published, the delivery goes back to the queue after a pause, as a
   * failed delivery (or, with the connection gone, the broker takes it back).
   */
  process(task: Task): Promise<void>;
  /**
   * Gives a delivery back unfinished, not by its fault (the worker stops,
   * or its sandbox was restarted for another task's hung handler):
   * a copy goes to the queue, keeping its failed deliveries so far, and the
   * delivery is acknowledged once the copy is confirmed, so that no RabbitMQ
   * version counts the return toward the delivery limit. A delivery from a
   * sender the function refuses, or one the broker will not take a copy
   * of, is given back as it is (`basic.nack`), and the broker keeps it.
   */
  handBack(task: Task): Promise<void>;
  /** Who sent a native message (a ping, say), and whether the function accepts them. */
  senderOf(delivery: Delivery): Sender;
  /**
   * Stops the running attempts of the call `taskId`, if `by` may cancel
   * them; what to tell `by`, or `undefined` when none runs here.
   */
  cancelRunning(taskId: string, by: string): CancelStatus | undefined;
  /**
   * How the task `taskId` ended here, from the record of answers: its
   * sender, its status, and whether it was cancelled; `undefined` when this
   * process has no answer of it (any more).
   */
  finished(taskId: string): { sender: string; status: string; cancelled: boolean } | undefined;
}

/** How a request that never ran is refused. */
interface Refusal {
  /** No reply: the sender may not call the function, so it learns nothing. */
  silent?: boolean;
  deliveries?: number;
  dropBody?: boolean;
}

/** Makes the handler of a worker's deliveries. */
export function createDeliveryHandler(options: DeliveryHandlerOptions): DeliveryHandler {
  const { runner, broker, info, queue, workerId, queueType, deliveryLimit } = options;
  const { maxBytes, senders, random, metrics, log, emit, retryDelays } = options;
  const answered = options.answered ?? new AnsweredTasks();
  const triggers = options.triggers ?? [];
  const stats = metrics.stats;
  const place = { function: info.name, queue, worker: workerId };
  const senderOf = createSenderCheck(broker.user, senders);
  const settler = createSettler(broker, {
    queue,
    workerId,
    queueType,
    // What it accepts: the senders it is told, and its own user (retries).
    allowedSenders: new Set([...senders, broker.user]),
  });
  const events = emit !== NO_EVENTS;
  const chain = options.emits === undefined
    ? undefined
    : createChainEmitter(broker, info.name, options.emits);
  let nextRun = 1;
  /** The attempts running now, by task id, for cancellations to find. */
  const running = new Map<string, RunningAttempt | RunningAttempt[]>();

  function startRun(task: Task): TaskRun {
    const { delivery } = task;
    const attempt = attemptOf(delivery);
    const taskId = taskIdOf(delivery);
    return {
      task,
      taskId,
      attempt,
      protocol: protocolFor(delivery),
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

  /** The run's logger, made on first use: most runs log one line, with its own fields. */
  function logOf(run: TaskRun): Logger {
    return run.logger ??= log.child({ ...idsOf(run), ...run.protocol.logFields });
  }

  /** The fields of a run's task events. */
  function eventOf(run: TaskRun): Omit<TaskEvent, "at" | "kind"> {
    return {
      ...place,
      task_id: run.taskId,
      attempt: run.attempt,
      trace_id: run.traced.ids.trace_id,
    };
  }

  function settle(run: TaskRun): void {
    if (!run.task.abandoned) broker.ack(run.task.delivery);
  }

  /** A reply the broker refuses (the caller's queue is full) is the caller's loss. */
  const tolerate = (run: TaskRun) => (error: unknown) => {
    if (!(error instanceof PublishRefusedError)) throw error;
    stats.repliesRefused++;
    logOf(run).warn("The broker refused the reply; the caller will not get it", {
      error: error.message,
    });
  };

  /**
   * Sends a run's answer, in its protocol, if its request asked for one;
   * inside a `reply` span when traced. An answer kept by the record is kept
   * before it is sent: should sending fail, the request comes back and is
   * answered from the record, not run again. A refused answer resolves (the
   * request is settled and never run again for it); any other failure (the
   * connection went) rejects.
   */
  function answer(
    run: TaskRun,
    status: AnswerFacts["status"],
    error: TaskError | null,
    resultJson?: string,
  ): Promise<void> {
    if (run.traced === NO_TRACE) return send(run, status, error, resultJson);
    const span = run.traced.step("reply", { "task.status": status });
    return send(run, status, error, resultJson).finally(() => span.end());
  }

  function send(
    run: TaskRun,
    status: AnswerFacts["status"],
    error: TaskError | null,
    resultJson: string | undefined,
  ): Promise<void> {
    const { delivery } = run.task;
    // A run kept by the record is answered for the record even with no one to answer.
    if (!delivery.properties.replyTo && !run.record) return Promise.resolve();
    const reply = run.protocol.answer(delivery, {
      status,
      error,
      resultJson,
      read: run.read,
      taskId: run.taskId,
      task: run.taskName,
      attempts: run.attempt,
      worker: workerId,
      queue,
      startedAt: run.startedAt,
      durationMs: elapsed(run),
    });
    if (!reply) return Promise.resolve();
    if (run.record && reply.kept) {
      answered.remember(run.record.key, run.record.fingerprint, reply.kept);
    }
    if (!reply.message || !delivery.properties.replyTo) return Promise.resolve();
    return settler.answer(delivery, reply.message).catch(tolerate(run));
  }

  /** Dead-letters and (unless `silent`) answers a request that never ran. */
  async function refuse(
    run: TaskRun,
    reason: DeadLetterReason,
    error: TaskError,
    extra: Refusal = {},
  ): Promise<void> {
    logOf(run).warn(
      reason === "rejected"
        ? "Rejected a request that breaks the contract"
        : reason === "untriggered"
        ? "Refused an event that no trigger of the function matches"
        : "Refused a request",
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
    emit({ ...eventOf(run), kind: "task-rejected", reason, error_type: error.type });
    settle(run);
  }

  async function handle(task: Task): Promise<void> {
    const { delivery } = task;
    const run = startRun(task);
    const judged = senderOf(delivery, run.protocol.routedSender(delivery, queue));
    run.sender = judged.sender;
    if (!judged.allowed) {
      stats.unauthenticated++;
      return await refuse(run, "unauthenticated", unauthenticatedError(judged, senders), {
        silent: true,
      });
    }
    // Whoever sent it chose reply_to: the worker publishes there as its own
    // user, so only to a place made for answers, never to a queue.
    const badReplyTo = replyToError(
      delivery.properties.replyTo,
      run.protocol.replyKind,
      judged.sender,
    );
    if (badReplyTo) {
      stats.invalidReplyTo++;
      return await refuse(run, "invalid_reply_to", badReplyTo, { silent: true });
    }
    // A binding of a trigger since removed outlives it on the broker: the
    // function runs only what it declares now.
    const untriggered = untriggeredError(delivery, info.name, triggers);
    if (untriggered) {
      stats.untriggered++;
      run.taskName = info.name;
      return await refuse(run, "untriggered", untriggered);
    }
    const { sender } = judged;
    const deliveries = deliveriesOf(delivery, broker.user);
    if (queueType === "quorum" && deliveries >= deliveryLimit) {
      stats.failed++;
      return await refuse(run, "delivery_limit", {
        type: "DeliveryLimit",
        message:
          `Cannot run the request again as it was delivered ${deliveries} times and never settled: the worker or its sandbox died while running it each time (see its logs)`,
      }, { deliveries });
    }
    const read = run.protocol.read(delivery, info, { maxBytes, maxEtaMs: options.maxEtaMs });
    if (!read.ok) {
      stats.rejected++;
      run.taskName = read.task ?? null;
      return await refuse(run, read.reason ?? "rejected", read.error, {
        dropBody: read.error.type === "MessageTooLarge",
      });
    }
    run.taskName = read.request.task;
    run.read = read;
    if (read.attempt !== undefined) run.attempt = read.attempt;
    if (read.taskId !== undefined) run.taskId = read.taskId;
    if (!run.protocol.remembersAnswers || run.taskId === null) return await proceed(run, read);
    // A copy of a request this process answered (redelivered after a lost
    // ack, or sent again by a caller that lost its node) gets that answer.
    const key = AnsweredTasks.keyOf(sender, read.record?.id ?? run.taskId);
    const fingerprint = read.record?.fingerprint ?? fingerprintOf(delivery);
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
    await settler.reply(run.task.delivery, earlier.reply, earlier.resultJson)
      .catch(tolerate(run));
    logOf(run).info("Answered a repeated request from the record, without running it", {
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
    const canceller = cancellerOf(run);
    if (canceller !== undefined) {
      stats.cancelled++;
      return await refuse(run, "cancelled", {
        type: CANCELLED,
        message: `Cannot start the call as broker user '${canceller}' cancelled it`,
      });
    }
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
      logOf(run).info("Task waits for its eta", { eta: new Date(read.eta).toISOString() });
      run.traced.end("eta");
      settle(run);
      return;
    }

    const tick = tickOf(delivery.properties.headers);
    log.debug("Task started", idsOf(run));
    if (events) emit({ ...eventOf(run), kind: "task-started" });
    if (request.progress) {
      settler.progress(delivery, {
        task_id: run.taskId,
        task: request.task,
        event: "started",
        worker: workerId,
        queue,
        attempt: run.attempt,
        at: run.startedAt,
      }).catch((error) => logOf(run).debug("Could not send a progress event", { error }));
    }
    const attempt: RunningAttempt = { run, runId: nextRun++ };
    track(attempt);
    let result: HandlerOutcome;
    try {
      result = await runner.run(
        {
          id: attempt.runId,
          payload: request.payload,
          taskId: run.taskId,
          attempt: run.attempt,
          worker: workerId,
          deadline,
          ...(tick !== null && { tick }),
          ...(read.event && { event: read.event }),
        },
        attemptLimit(read.timeoutMs, deadline),
        () => logOf(run),
      );
    } finally {
      untrack(attempt);
    }
    if (task.abandoned) return;
    if (run.cancelledBy !== undefined && !result.ok && result.requeue === undefined) {
      return await stopped(run, run.cancelledBy);
    }
    if (result.ok && !fitsIn(result.resultJson, maxBytes)) {
      return await fail(run, request, {
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
      return await fail(run, request, {
        ok: false,
        retryable: false,
        error: {
          type: "InvalidResult",
          message:
            "Cannot send the handler's result as its sandbox sent text that is not one JSON value: return JSON-compatible data, and leave JSON and postMessage as they are",
        },
      }, deadline);
    }
    if (!result.ok) return await fail(run, request, result, deadline);
    if (chain) {
      const refused = await chain.emit({
        event: read.event,
        taskId: run.taskId,
        sender: run.sender,
        traceparent: traceparentOf(run, delivery),
        // Checked at arrival: a reply destination, or none.
        replyTo: delivery.properties.replyTo,
        correlationId: delivery.properties.correlationId,
        resultJson: result.resultJson,
      });
      if (refused) {
        return await fail(run, request, { ok: false, retryable: false, error: refused }, deadline);
      }
    }
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
    if (events) emit({ ...eventOf(run), kind: "task-succeeded", duration_ms: duration });
    settle(run);
  }

  /** Schedules the next attempt of a failed one; false when the deadline comes first. */
  async function retry(
    run: TaskRun,
    request: TaskRequest,
    error: TaskError,
    deadline: number | null,
    maxRetries: number,
    delayMs: number,
  ): Promise<boolean> {
    const { delivery } = run.task;
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
    logOf(run).info("Task failed; retrying", {
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
        worker: workerId,
        queue,
        attempt: run.attempt,
        at: new Date().toISOString(),
        error,
        delay_ms: delayMs,
        max_retries: maxRetries,
      }).catch(() => {});
    }
    run.traced.end("retry", error);
    emit({
      ...eventOf(run),
      kind: "task-retried",
      error_type: error.type,
      error: error.message,
      delay_ms: delayMs,
      duration_ms: elapsed(run),
    });
    settle(run);
    return true;
  }

  /** Settles a failed attempt; see the module documentation. */
  async function fail(
    run: TaskRun,
    request: TaskRequest,
    result: Extract<HandlerOutcome, { ok: false }>,
    deadline: number | null,
  ): Promise<void> {
    const { delivery } = run.task;
    const { error } = result;
    if (result.requeue === "hand_back") {
      logOf(run).warn("Returning a task to the queue", { error: error.message });
      run.traced.end("requeued", error);
      return await handBack(run.task);
    }
    if (result.requeue === "failed_delivery") {
      logOf(run).warn("Returning a task to the queue as a failed delivery", {
        error: error.message,
      });
      run.traced.end("requeued", error);
      stats.sandboxFailed++;
      return returnFailed(run.task);
    }
    const policy = policyFor(info, request);
    let reason: DeadLetterReason = result.retryable ? "exhausted" : "non_retryable";
    if (result.retryable && run.attempt <= policy.maxRetries) {
      const delayMs = retryDelay(run.attempt, policy, random, retryDelays);
      if (await retry(run, request, error, deadline, policy.maxRetries, delayMs)) return;
      reason = "expired";
    }
    if (error.type === DEADLINE_EXCEEDED) reason = "expired";
    stats.failed++;
    const duration = elapsed(run);
    metrics.observe("error", duration);
    logOf(run).warn("Task failed", {
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
      ...eventOf(run),
      kind: "task-failed",
      reason,
      error_type: error.type,
      error: error.message,
      duration_ms: duration,
    });
    settle(run);
  }

  /**
   * Who cancelled the call of `run` (among those who may), when a
   * cancellation holds. A replayed dead letter is an operator's deliberate
   * act after any cancellation: it runs.
   */
  function cancellerOf(run: TaskRun): string | undefined {
    if (!options.cancelled || run.taskId === null) return undefined;
    if (run.task.delivery.properties.headers?.[REPLAYED_SENDER_HEADER] !== undefined) {
      return undefined;
    }
    return options.cancelled.find(run.taskId, run.sender);
  }

  /**
   * Adds an attempt to those a cancellation can find by its task id. One id
   * runs once at a time nearly always: a list only for the rare two senders
   * of one id, so the common case allocates nothing.
   */
  function track(attempt: RunningAttempt): void {
    const id = attempt.run.taskId;
    if (id === null) return;
    const current = running.get(id);
    if (current === undefined) running.set(id, attempt);
    else running.set(id, [...(Array.isArray(current) ? current : [current]), attempt]);
  }

  function untrack(attempt: RunningAttempt): void {
    const id = attempt.run.taskId;
    if (id === null) return;
    const current = running.get(id);
    if (current === attempt) return void running.delete(id);
    if (!Array.isArray(current)) return;
    const rest = current.filter((other) => other !== attempt);
    if (rest.length === 0) running.delete(id);
    else running.set(id, rest.length === 1 ? rest[0] : rest);
  }

  /** The attempts of `taskId` running now. */
  function runningOf(taskId: string): RunningAttempt[] {
    const current = running.get(taskId);
    return current === undefined ? [] : Array.isArray(current) ? current : [current];
  }

  function cancelRunning(taskId: string, by: string): CancelStatus | undefined {
    let status: CancelStatus | undefined;
    for (const { run, runId } of runningOf(taskId)) {
      if (!mayCancel(by, run.sender)) {
        status ??= "refused";
      } else if (run.cancelledBy !== undefined) {
        if (status !== "stopped") status = "already_cancelled";
      } else if (
        runner.cancel?.(
          runId,
          `Stopped the running attempt as broker user '${by}' cancelled the call`,
        )
      ) {
        run.cancelledBy = by;
        status = "stopped";
      }
    }
    return status;
  }

  /** Settles an attempt a cancellation stopped: dead-lettered as `cancelled`, and answered. */
  async function stopped(run: TaskRun, by: string): Promise<void> {
    const error: TaskError = {
      type: CANCELLED,
      message: `Stopped the running attempt as broker user '${by}' cancelled the call`,
    };
    stats.cancelled++;
    const duration = elapsed(run);
    logOf(run).warn("Task cancelled", {
      status: "cancelled",
      reason: "cancelled",
      cancelled_by: by,
      duration_ms: duration,
    });
    const span = run.traced.step("dead letter", { "task.reason": "cancelled" });
    await settler.deadLetter(run.task.delivery, {
      reason: "cancelled",
      error,
      attempts: run.attempt,
      sender: run.sender,
    }).finally(() => span.end());
    await answer(run, "error", error);
    run.traced.end("cancelled", error);
    emit({
      ...eventOf(run),
      kind: "task-failed",
      reason: "cancelled",
      error_type: CANCELLED,
      error: error.message,
      duration_ms: duration,
    });
    settle(run);
  }

  async function handBack(task: Task): Promise<void> {
    if (task.abandoned) return;
    const { delivery } = task;
    task.abandoned = true;
    const { sender, allowed } = senderOf(
      delivery,
      protocolFor(delivery).routedSender(delivery, queue),
    );
    if (!allowed) return broker.nack(delivery, true);
    try {
      await settler.handBack(delivery, {
        sender,
        priorDeliveries: deliveriesOf(delivery, broker.user),
      });
    } catch (error) {
      log.warn("Could not hand a task back as a copy; returning it as it is", {
        task_id: taskIdOf(delivery) ?? undefined,
        error,
      });
      return broker.nack(delivery, true);
    }
    stats.handedBack++;
    broker.ack(delivery);
  }

  /**
   * Publishing an outcome failed. With the connection gone the broker takes
   * the delivery back by itself; otherwise give it back after a pause (so
   * that a persistent fault does not spin) as a failed delivery, so another
   * attempt or, on a quorum queue, the delivery limit decides.
   */
  function recover(task: Task, error: unknown): void {
    if (task.abandoned) return;
    log.error("Could not settle a task; returning it to the queue", {
      task_id: taskIdOf(task.delivery) ?? undefined,
      attempt: attemptOf(task.delivery),
      error,
    });
    setTimeout(() => {
      if (task.abandoned) return;
      stats.settlesRefused++;
      returnFailed(task);
    }, options.returnDelayMs);
  }

  /**
   * Gives a delivery back as a failed one (`basic.reject`), which every
   * RabbitMQ version counts toward a quorum queue's delivery limit, where a
   * `basic.nack` is not from 4.3 on.
   */
  function returnFailed(task: Task): void {
    if (task.abandoned) return;
    task.abandoned = true;
    broker.reject(task.delivery);
  }

  return {
    process: (task) => handle(task).catch((error) => recover(task, error)),
    handBack,
    senderOf: (delivery) => senderOf(delivery),
    cancelRunning,
    finished(taskId) {
      const found = answered.findTask(taskId);
      if (!found) return undefined;
      const { reply } = found.answer;
      return {
        sender: found.sender,
        status: reply.status,
        cancelled: reply.error?.type === CANCELLED,
      };
    },
  };
}
