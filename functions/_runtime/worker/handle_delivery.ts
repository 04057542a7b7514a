/**
 * What happens to one delivery, from its arrival to its settlement: who
 * sent it and whether that sender may call the function, how often it was
 * delivered, what it asks (in the native contract or Celery's), whether its
 * deadline or eta allows it to run now; then the attempt, and the reply,
 * retry or dead letter its outcome calls for. See `start_worker.ts` for the
 * order of settlement.
 *
 * @module
 */

import { backoffDelay } from "../backoff.ts";
import type { Broker, Delivery } from "../broker/broker.ts";
import {
  ATTEMPT_HEADER,
  boundText,
  checkEnvelope,
  type DeadLetterReason,
  DEADLINE_EXCEEDED,
  encodeCeleryReply,
  isCeleryMessage,
  parseCeleryRequest,
  parseRequest,
  RETRY_LIMITS,
  SENDER_HEADER,
  type TaskError,
  type TaskReply,
  type TaskRequest,
} from "../contract/mod.ts";
import type { FunctionInfo } from "../define_function.ts";
import type { Logger } from "../log.ts";
import {
  attemptLimit,
  attemptOf,
  deliveriesOf,
  ETA_SLACK_MS,
  fitsIn,
  JITTER_STEPS,
  policyFor,
  sentAtOf,
  type Task,
  taskIdOf,
  twoDigits,
} from "./delivery_facts.ts";
import { type AnsweredTask, AnsweredTasks, fingerprintOf } from "./answered_tasks.ts";
import type { WorkerMetrics } from "./metrics.ts";
import type { HandlerOutcome } from "./run_handler.ts";
import type { HandlerRunner } from "./runner.ts";
import type { Settler } from "./settle.ts";
import type { EmitTaskEvent } from "./task_events.ts";
import { startTaskTrace, type TaskTrace } from "./tracing.ts";

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
}

/** Handles deliveries; see the module documentation. */
export interface DeliveryHandler {
  /** Settles one delivery; rejects only when publishing its outcome failed. */
  process(task: Task): Promise<void>;
  /** Who sent a delivery, and whether the function accepts it. */
  senderOf(delivery: Delivery, celery: boolean): { sender?: string; allowed: boolean };
}

/** Makes the handler of a worker's deliveries. */
export function createDeliveryHandler(context: DeliveryContext): DeliveryHandler {
  const { runner, broker, settler, info, queue, workerId, queueType, deliveryLimit } = context;
  const { maxBytes, senders, random, metrics, log, emit, answered } = context;
  const stats = metrics.stats;
  const anySender = senders.has("*");
  // On a broker without users of its own every party is guest: user_id
  // proves nothing there, so a request may leave it out.
  const anonymousOk = anySender || broker.user === "guest";
  let nextRun = 1;

  /** Who sent the request, and whether the function accepts it. */
  function senderOf(delivery: Delivery, celery: boolean): { sender?: string; allowed: boolean } {
    const userId = delivery.properties.userId;
    // Celery clients set no user_id: they publish through the exchange
    // named after the queue, which only Celery clients' users may write.
    if (celery && delivery.exchange === queue) {
      return { sender: userId ?? `celery via exchange '${queue}'`, allowed: true };
    }
    if (userId === broker.user) {
      // Only this worker's user can publish as it: a retry, whose header
      // keeps the original sender.
      const original = delivery.properties.headers?.[SENDER_HEADER];
      return { sender: typeof original === "string" ? original : userId, allowed: true };
    }
    if (userId === undefined) return { allowed: anonymousOk };
    return { sender: userId, allowed: anySender || senders.has(userId) };
  }

  function settle(task: Task): void {
    if (!task.abandoned) broker.ack(task.delivery);
  }

  /** How a task is answered: in the native contract, or as Celery's rpc:// backend expects. */
  interface Answer {
    (status: "success", error: null, resultJson: string): Promise<void>;
    (status: "error", error: TaskError, resultJson?: undefined): Promise<void>;
  }

  async function process(task: Task): Promise<void> {
    const { delivery } = task;
    const startedAt = new Date();
    const started = performance.now();
    const celery = isCeleryMessage(delivery);
    let attempt = attemptOf(delivery);
    const taskId = taskIdOf(delivery);
    const headers = delivery.properties.headers;
    const traced = startTaskTrace(headers, {
      function: info.name,
      queue,
      taskId,
      attempt,
      worker: workerId,
    }, sentAtOf(delivery));
    const ids = { task_id: taskId ?? undefined, attempt, ...traced.ids };
    let taskLog: Logger | undefined;
    const logOf = () => taskLog ??= log.child({ ...ids, ...(celery && { protocol: "celery" }) });
    const event = { function: info.name, queue, task_id: taskId, worker: workerId };
    const elapsed = () => Math.round((performance.now() - started) * 1000) / 1000;
    let taskName: string | null = null;
    let celeryId: string | undefined;
    let ignoreResult = false;
    const outcome = (status: "success" | "error", error: TaskError | null): TaskReply => ({
      task_id: taskId,
      task: taskName,
      status,
      result: null,
      error,
      worker: workerId,
      queue,
      attempts: attempt,
      started_at: startedAt.toISOString(),
      finished_at: new Date().toISOString(),
      duration_ms: elapsed(),
    });
    const answer: Answer = (status, error, resultJson?) => {
      if (!delivery.properties.replyTo) return Promise.resolve();
      const span = traced.step("reply", { "task.status": status });
      return (sendAnswer as (...args: unknown[]) => Promise<void>)(status, error, resultJson)
        .finally(() => span.end());
    };
    // Set once this request holds its task id in the record of answers.
    const held: { key?: string; fingerprint?: string } = {};
    const sendAnswer: Answer = (status, error, resultJson?) => {
      if (!celery) {
        const reply = outcome(status, error);
        // Kept before it is sent: should sending fail, the request comes
        // back and is answered from the record, not run again.
        if (held.key !== undefined && held.fingerprint !== undefined) {
          answered.remember(held.key, held.fingerprint, { reply, resultJson });
        }
        return settler.reply(delivery, reply, resultJson);
      }
      const id = celeryId ?? String(delivery.properties.headers?.id ?? taskId ?? "");
      if (ignoreResult) return Promise.resolve();
      return settler.answer(
        delivery,
        encodeCeleryReply(
          id,
          status === "success"
            ? { ok: true, resultJson: resultJson! }
            : { ok: false, error: error! },
        ),
      );
    };
    const { sender, allowed } = senderOf(delivery, celery);

    /** Dead-letters and (unless `silent`) answers a request that never ran. */
    const refuse = async (
      reason: DeadLetterReason,
      error: TaskError,
      extra: { silent?: boolean; deliveries?: number; dropBody?: boolean } = {},
    ) => {
      logOf().warn(
        reason === "rejected" ? "Rejected a request that breaks the contract" : "Refused a request",
        {
          status: reason,
          reason,
          error: error.message,
          error_type: error.type,
          sender,
          duration_ms: elapsed(),
        },
      );
      const span = traced.step("dead letter", { "task.reason": reason });
      await settler.deadLetter(delivery, {
        reason,
        error,
        attempts: attempt,
        sender,
        deliveries: extra.deliveries,
        dropBody: extra.dropBody,
      }).finally(() => span.end());
      if (!extra.silent) await answer("error", error);
      traced.end(reason, error);
      emit({ ...event, kind: "task-rejected", attempt, reason, error_type: error.type });
      settle(task);
    };

    if (!allowed) {
      stats.unauthenticated++;
      // No reply: whoever sent it may not call this function, so it learns nothing.
      return await refuse("unauthenticated", {
        type: "Unauthenticated",
        message: sender === undefined
          ? `Cannot run a request without user_id: this function accepts requests from ${
            [...senders].join(", ")
          } only`
          : `Cannot run a request from broker user '${
            boundText(sender, 64)
          }': this function accepts requests from ${[...senders].join(", ")} only`,
      }, { silent: true });
    }
    const deliveries = deliveriesOf(delivery);
    if (queueType === "quorum" && deliveries >= deliveryLimit) {
      stats.failed++;
      return await refuse("delivery_limit", {
        type: "DeliveryLimit",
        message:
          `Cannot run the request again as it was delivered ${deliveries} times and never settled: the worker died while running it each time (see its logs)`,
      }, { deliveries });
    }
    let request: TaskRequest;
    let eta: number | undefined;
    let timeoutMs = info.timeoutMs;
    if (celery) {
      const envelope = checkEnvelope(delivery, { maxBytes, contentType: false });
      const parsed = envelope.ok
        ? parseCeleryRequest(delivery, { names: info.celeryNames, maxBytes })
        : envelope;
      if (!parsed.ok) {
        stats.rejected++;
        return await refuse("rejected", parsed.error, {
          dropBody: parsed.error.type === "MessageTooLarge",
        });
      }
      const call = parsed.value;
      celeryId = call.id;
      ignoreResult = call.ignoreResult;
      taskName = info.name;
      if (delivery.properties.headers?.[ATTEMPT_HEADER] === undefined) attempt = call.retries + 1;
      request = {
        task: info.name,
        payload: call.payload,
        progress: false,
        retry: {},
        ...(call.expires !== undefined && { deadline: call.expires }),
      };
      eta = call.eta;
      if (call.timeLimitMs !== undefined) timeoutMs = Math.min(timeoutMs, call.timeLimitMs);
    } else {
      const parsed = parseRequest(delivery, { task: info.name, maxBytes });
      if (!parsed.ok) {
        stats.rejected++;
        taskName = parsed.task ?? null;
        return await refuse("rejected", parsed.error, {
          dropBody: parsed.error.type === "MessageTooLarge",
        });
      }
      request = parsed.value;
      taskName = request.task;
    }
    const proceed = async (): Promise<void> => {
      const deadline = request.deadline ?? null;
      if (deadline !== null && deadline <= Date.now()) {
        stats.expired++;
        return await refuse("expired", {
          type: DEADLINE_EXCEEDED,
          message: `Cannot start the task as its deadline passed ${
            Date.now() - deadline
          } ms ago: the caller no longer waits for it`,
        });
      }
      if (eta !== undefined && eta - Date.now() > ETA_SLACK_MS) {
        // Not yet: it waits in a delay queue, as a retry does, holding no worker.
        const waitMs = Math.min(eta - Date.now(), RETRY_LIMITS.max_delay_ms);
        await settler.retry(delivery, {
          nextAttempt: attempt,
          delayMs: twoDigits(waitMs),
          sender,
          remainingMs: deadline === null ? undefined : deadline - Date.now(),
        });
        logOf().info("Task waits for its eta", { eta: new Date(eta).toISOString() });
        traced.end("eta");
        settle(task);
        return;
      }

      log.debug("Task started", ids);
      emit({ ...event, kind: "task-started", attempt });
      if (request.progress) {
        settler.progress(delivery, {
          task_id: taskId,
          task: request.task,
          event: "started",
          worker: workerId,
          queue,
          attempt,
          at: startedAt.toISOString(),
        }).catch((error) => logOf().debug("Could not send a progress event", { error }));
      }
      const result = await runner.run(
        { id: nextRun++, payload: request.payload, taskId, attempt, worker: workerId, deadline },
        attemptLimit(timeoutMs, deadline),
        logOf(),
      );
      if (task.abandoned) return;
      const checked = result.ok && !fitsIn(result.resultJson, maxBytes)
        ? {
          ok: false as const,
          retryable: false,
          error: {
            type: "ResultTooLarge",
            message:
              `Cannot send the handler's result as it takes more than ${maxBytes} bytes: return less, or store it elsewhere and return where`,
          },
        }
        : result;
      if (checked.ok) {
        stats.succeeded++;
        const duration = elapsed();
        metrics.observe("success", duration);
        // The reply goes first: the caller waits for it, not for the log line.
        const replied = answer("success", null, checked.resultJson);
        log.info("Task succeeded", { ...ids, status: "success", duration_ms: duration });
        await replied;
        traced.end("success");
        emit({ ...event, kind: "task-succeeded", attempt, duration_ms: duration });
        settle(task);
        return;
      }
      await failed(task, request, checked, {
        attempt,
        sender,
        deadline,
        answer,
        logOf,
        elapsed,
        traced,
        event,
      });
    };
    if (celery || taskId === null) return await proceed();
    const key = AnsweredTasks.keyOf(sender, taskId);
    const fingerprint = fingerprintOf(delivery);
    const claim = await answered.claim(key, fingerprint);
    if ("answer" in claim) return await answerAgain(task, claim.answer, logOf());
    held.key = key;
    held.fingerprint = fingerprint;
    try {
      await proceed();
    } finally {
      claim.release();
    }
  }

  /** Sends the recorded answer of a request this process already answered, and settles the copy. */
  async function answerAgain(task: Task, earlier: AnsweredTask, taskLog: Logger): Promise<void> {
    stats.answeredAgain++;
    await settler.reply(task.delivery, earlier.reply, earlier.resultJson);
    taskLog.info("Answered a repeated request from the record, without running it", {
      status: earlier.reply.status,
      redelivered: task.delivery.redelivered,
    });
    settle(task);
  }

  async function failed(
    task: Task,
    request: TaskRequest,
    result: Extract<HandlerOutcome, { ok: false }>,
    at: {
      attempt: number;
      sender?: string;
      deadline: number | null;
      answer: Answer;
      logOf: () => Logger;
      elapsed: () => number;
      traced: TaskTrace;
      event: { function: string; queue: string; task_id: string | null; worker: string };
    },
  ): Promise<void> {
    const { delivery } = task;
    const { error } = result;
    if (result.requeue) {
      at.logOf().warn("Returning a task to the queue", { error: error.message });
      at.traced.end("requeued", error);
      if (!task.abandoned) broker.nack(delivery, true);
      return;
    }
    const policy = policyFor(info, request);
    let reason: DeadLetterReason = result.retryable ? "exhausted" : "non_retryable";
    if (result.retryable && at.attempt <= policy.maxRetries) {
      const delayMs = twoDigits(backoffDelay(
        at.attempt,
        policy,
        () => Math.floor(random() * (JITTER_STEPS + 1)) / JITTER_STEPS,
      ));
      const remainingMs = at.deadline === null ? undefined : at.deadline - Date.now();
      if (remainingMs === undefined || remainingMs > delayMs) {
        const span = at.traced.step("retry", { "task.delay_ms": delayMs });
        await settler.retry(delivery, {
          nextAttempt: at.attempt + 1,
          delayMs,
          sender: at.sender,
          remainingMs,
        }).finally(() => span.end());
        stats.retried++;
        at.logOf().info("Task failed; retrying", {
          status: "retry",
          error: error.message,
          error_type: error.type,
          duration_ms: at.elapsed(),
          delay_ms: delayMs,
          retry: at.attempt,
          max_retries: policy.maxRetries,
        });
        if (request.progress) {
          settler.progress(delivery, {
            task_id: taskIdOf(delivery),
            task: request.task,
            event: "retry",
            worker: workerId,
            queue,
            attempt: at.attempt,
            at: new Date().toISOString(),
            error,
            delay_ms: delayMs,
            max_retries: policy.maxRetries,
          }).catch(() => {});
        }
        at.traced.end("retry", error);
        emit({
          ...at.event,
          kind: "task-retried",
          attempt: at.attempt,
          error_type: error.type,
          error: error.message,
          delay_ms: delayMs,
          duration_ms: at.elapsed(),
        });
        settle(task);
        return;
      }
      reason = "expired";
    }
    if (error.type === DEADLINE_EXCEEDED) reason = "expired";
    stats.failed++;
    const duration = at.elapsed();
    metrics.observe("error", duration);
    at.logOf().warn("Task failed", {
      status: "error",
      error: error.message,
      error_type: error.type,
      reason,
      duration_ms: duration,
    });
    const span = at.traced.step("dead letter", { "task.reason": reason });
    await settler.deadLetter(delivery, {
      reason,
      error,
      attempts: at.attempt,
      sender: at.sender,
    }).finally(() => span.end());
    await at.answer("error", error);
    at.traced.end(reason, error);
    emit({
      ...at.event,
      kind: "task-failed",
      attempt: at.attempt,
      reason,
      error_type: error.type,
      error: error.message,
      duration_ms: duration,
    });
    settle(task);
  }

  return { process, senderOf };
}
