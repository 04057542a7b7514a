/**
 * The worker runtime: turns a function (through its {@linkcode HandlerRunner})
 * into a consumer of its one queue. Every delivery is settled exactly one
 * way, and only after its outcome is safely with the broker:
 *
 * - a request from a sender the function does not accept is dead-lettered
 *   (`unauthenticated`) and never run;
 * - one the broker delivered `deliveryLimit` times without a settlement (the
 *   worker died each time) is dead-lettered (`delivery_limit`);
 * - one that breaks the contract is dead-lettered (`rejected`) and answered;
 * - one past its deadline is dead-lettered (`expired`) and answered, unrun;
 * - a success is answered;
 * - a retryable failure with retries left (and time before the deadline) is
 *   re-published to a delay queue whose TTL returns it to the work queue;
 * - any other failure is dead-lettered and answered;
 *
 * and then acknowledged. If publishing any of these fails, the delivery goes
 * back to the queue (or, when the connection is gone, the broker takes it
 * back): no delivery is ever held unsettled.
 *
 * @module
 */

import { backoffDelay } from "../backoff.ts";
import {
  type Broker,
  type Consumer,
  type Delivery,
  QueueMismatchError,
  type QueueOptions,
} from "../broker/broker.ts";
import {
  ATTEMPT_HEADER,
  boundText,
  deadLetterQueueOf,
  type DeadLetterReason,
  DEFAULT_MAX_MESSAGE_BYTES,
  DELIVERY_COUNT_HEADER,
  type Message,
  parseRequest,
  SENDER_HEADER,
  type TaskError,
  type TaskReply,
  type TaskRequest,
} from "../contract/mod.ts";
import type { FunctionInfo, RetryPolicy } from "../define_function.ts";
import { type Logger, SILENT_LOGGER } from "../log.ts";
import { type ControlChannel, serveControl } from "./control.ts";
import { WorkerMetrics, type WorkerStats } from "./metrics.ts";
import type { HandlerOutcome } from "./run_handler.ts";
import type { AttemptLimit, HandlerRunner } from "./runner.ts";
import { createSettler } from "./settle.ts";

export type { WorkerStats } from "./metrics.ts";

/** How many deliveries of one request a quorum queue allows unless `DELIVERY_LIMIT` says otherwise. */
export const DEFAULT_DELIVERY_LIMIT = 5;

/** Options for {@linkcode startWorker}. */
export interface WorkerOptions {
  /** Identifies this worker in replies and logs: function name plus host. */
  workerId: string;
  /**
   * The queue to consume.
   * @default {runner.info.queue}
   */
  queue?: string;
  /**
   * Handlers running at once.
   * @default {1}
   */
  concurrency?: number;
  /**
   * Deliveries held unacknowledged at once. Equal to `concurrency` by default,
   * so no message waits on a busy replica while another replica is idle.
   * @default {concurrency}
   */
  prefetch?: number;
  /**
   * Largest request body (and result) accepted, in bytes.
   * @default {DEFAULT_MAX_MESSAGE_BYTES}
   */
  maxMessageBytes?: number;
  /**
   * Queue type of the work queue, its dead letters and its retries.
   * @default {"quorum"}
   */
  queueType?: "classic" | "quorum";
  /**
   * Deliveries of one request, never settled, after which it is
   * dead-lettered (quorum queues count them; classic queues cannot).
   * @default {DEFAULT_DELIVERY_LIMIT}
   */
  deliveryLimit?: number;
  /**
   * Broker users whose requests run; `*` accepts any sender. The worker's own
   * user (its retries) is always accepted.
   * @default {runner.info.allowedSenders}
   */
  allowedSenders?: readonly string[];
  /** @default {SILENT_LOGGER} */
  log?: Logger;
  /** Source of randomness for retry jitter, for tests. @default {Math.random} */
  random?: () => number;
  /**
   * Counters to update; pass the same one to every start of a worker process
   * so that they survive reconnections.
   * @default {new WorkerMetrics()}
   */
  metrics?: WorkerMetrics;
  /**
   * How long a delivery whose outcome could not be published waits before
   * it goes back to the queue, so that a persistent fault does not spin.
   * @default {1000}
   */
  returnDelayMs?: number;
}

/** A worker consuming its queue on one broker connection. */
export interface RunningWorker {
  readonly stats: Readonly<WorkerStats>;
  /**
   * Stops taking messages, returns the ones not started to the queue, lets
   * running handlers finish within `graceMs`, then aborts them and returns
   * their messages too. Resolves when every delivery is settled.
   */
  stop(graceMs: number): Promise<void>;
  /** Forgets unfinished work after the connection is lost: the broker already took it back. */
  abandon(): void;
}

// Jitter takes one of this many evenly spaced steps, so a policy maps to a
// bounded set of delay queues.
const JITTER_STEPS = 20;

/** Largest attempt number read from a header; a higher one is treated as this. */
const MAX_ATTEMPT = 1000;

interface Task {
  delivery: Delivery;
  /** Set once the message went back to the broker unfinished. */
  abandoned: boolean;
  done: Promise<void>;
}

function attemptOf(delivery: Delivery): number {
  const value = Number(delivery.properties.headers?.[ATTEMPT_HEADER]);
  return Number.isInteger(value) && value >= 1 ? Math.min(value, MAX_ATTEMPT) : 1;
}

function deliveriesOf(delivery: Delivery): number {
  const value = Number(delivery.properties.headers?.[DELIVERY_COUNT_HEADER]);
  return Number.isInteger(value) && value >= 0 ? value : 0;
}

function taskIdOf(message: Message): string | null {
  const id = message.properties.messageId ?? message.properties.correlationId;
  return id === undefined ? null : boundText(id, 255);
}

function policyFor(info: FunctionInfo, request: TaskRequest): RetryPolicy {
  const { retry } = request;
  return {
    ...info.retry,
    ...(retry.max_retries !== undefined && { maxRetries: retry.max_retries }),
    ...(retry.base_delay_ms !== undefined && { baseDelayMs: retry.base_delay_ms }),
    ...(retry.factor !== undefined && { factor: retry.factor }),
    ...(retry.max_delay_ms !== undefined && { maxDelayMs: retry.max_delay_ms }),
  };
}

/**
 * `ms` rounded to two significant digits (1234 to 1200). Each delay has a
 * retry queue of its own: rounding keeps the number of queues a function
 * can make small, whatever delays its requests ask for.
 */
export function twoDigits(ms: number): number {
  if (ms < 100) return Math.round(ms);
  const unit = 10 ** (Math.floor(Math.log10(ms)) - 1);
  return Math.round(ms / unit) * unit;
}

/** Bytes of `text` as UTF-8, counted only when its length alone cannot settle `max`. */
function fitsIn(text: string, max: number): boolean {
  if (text.length * 3 <= max) return true;
  if (text.length > max) return false;
  return new TextEncoder().encode(text).byteLength <= max;
}

/**
 * Declares the function's queues and starts consuming. The returned worker
 * runs until {@linkcode RunningWorker.stop} or until the broker connection
 * ends (then call {@linkcode RunningWorker.abandon}).
 */
export async function startWorker(
  runner: HandlerRunner,
  broker: Broker,
  options: WorkerOptions,
): Promise<RunningWorker> {
  const info = runner.info;
  const queue = options.queue ?? info.queue;
  const concurrency = options.concurrency ?? 1;
  const prefetch = options.prefetch ?? concurrency;
  const maxBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  const random = options.random ?? Math.random;
  const queueType = options.queueType ?? "quorum";
  const deliveryLimit = options.deliveryLimit ?? DEFAULT_DELIVERY_LIMIT;
  const senders = new Set(options.allowedSenders ?? info.allowedSenders);
  const anySender = senders.has("*");
  // On a broker without users of its own every party is guest: user_id
  // proves nothing there, so a request may leave it out.
  const anonymousOk = anySender || broker.user === "guest";
  const returnDelayMs = options.returnDelayMs ?? 1000;
  const workerId = options.workerId;
  const log = (options.log ?? SILENT_LOGGER).child({
    function: info.name,
    queue,
    worker: workerId,
  });
  const metrics = options.metrics ?? new WorkerMetrics();
  const stats: WorkerStats = metrics.stats;
  const settler = createSettler(broker, { queue, workerId, queueType });
  const tasks = new Set<Task>();
  const waiting: Delivery[] = [];
  let running = 0;
  let stopping = false;
  let nextRun = 1;

  const dlq = deadLetterQueueOf(queue);
  await declareOwn(broker, dlq, { durable: true, type: queueType });
  await declareOwn(broker, queue, {
    durable: true,
    type: queueType,
    deadLetterQueue: dlq,
    ...(queueType === "quorum" && { deliveryLimit: deliveryLimit + 1 }),
  });

  /** Who sent the request, and whether the function accepts it. */
  function senderOf(delivery: Delivery): { sender?: string; allowed: boolean } {
    const userId = delivery.properties.userId;
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

  async function process(task: Task): Promise<void> {
    const { delivery } = task;
    const startedAt = new Date();
    const started = performance.now();
    const attempt = attemptOf(delivery);
    const taskId = taskIdOf(delivery);
    const ids = { task_id: taskId ?? undefined, attempt };
    let taskLog: Logger | undefined;
    const logOf = () => taskLog ??= log.child(ids);
    const elapsed = () => Math.round((performance.now() - started) * 1000) / 1000;
    const outcome = (
      status: "success" | "error",
      error: TaskError | null,
      task: string | null,
    ): TaskReply => ({
      task_id: taskId,
      task,
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
    const { sender, allowed } = senderOf(delivery);

    /** Dead-letters and (unless `silent`) answers a request that never ran. */
    const refuse = async (
      reason: DeadLetterReason,
      error: TaskError,
      extra: {
        task?: string | null;
        silent?: boolean;
        deliveries?: number;
        dropBody?: boolean;
      } = {},
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
      await settler.deadLetter(delivery, {
        reason,
        error,
        attempts: attempt,
        sender,
        deliveries: extra.deliveries,
        dropBody: extra.dropBody,
      });
      if (!extra.silent) {
        await settler.reply(delivery, outcome("error", error, extra.task ?? null));
      }
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
    const parsed = parseRequest(delivery, { task: info.name, maxBytes });
    if (!parsed.ok) {
      stats.rejected++;
      return await refuse("rejected", parsed.error, {
        task: parsed.task,
        dropBody: parsed.error.type === "MessageTooLarge",
      });
    }
    const request = parsed.value;
    const deadline = request.deadline ?? null;
    if (deadline !== null && deadline <= Date.now()) {
      stats.expired++;
      return await refuse("expired", {
        type: "DeadlineExceeded",
        message: `Cannot start the task as its deadline passed ${
          Date.now() - deadline
        } ms ago: the caller no longer waits for it`,
      }, { task: request.task });
    }

    log.debug("Task started", ids);
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
      attemptLimit(info.timeoutMs, deadline),
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
      const success = outcome("success", null, request.task);
      metrics.observe("success", success.duration_ms);
      // The reply goes first: the caller waits for it, not for the log line.
      const replied = settler.reply(delivery, success, checked.resultJson);
      log.info("Task succeeded", { ...ids, status: "success", duration_ms: success.duration_ms });
      await replied;
      settle(task);
      return;
    }
    await failed(task, request, checked, { attempt, sender, deadline, outcome, logOf, elapsed });
  }

  async function failed(
    task: Task,
    request: TaskRequest,
    result: Extract<HandlerOutcome, { ok: false }>,
    at: {
      attempt: number;
      sender?: string;
      deadline: number | null;
      outcome: (status: "error", error: TaskError, task: string) => TaskReply;
      logOf: () => Logger;
      elapsed: () => number;
    },
  ): Promise<void> {
    const { delivery } = task;
    const { error } = result;
    if (result.requeue) {
      at.logOf().warn("Returning a task to the queue", { error: error.message });
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
        await settler.retry(delivery, {
          nextAttempt: at.attempt + 1,
          delayMs,
          sender: at.sender,
          remainingMs,
        });
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
        settle(task);
        return;
      }
      reason = "expired";
    }
    if (error.type === "DeadlineExceeded") reason = "expired";
    stats.failed++;
    const reply = at.outcome("error", error, request.task);
    metrics.observe("error", reply.duration_ms);
    at.logOf().warn("Task failed", {
      status: "error",
      error: error.message,
      error_type: error.type,
      reason,
      duration_ms: reply.duration_ms,
    });
    await settler.deadLetter(delivery, {
      reason,
      error,
      attempts: at.attempt,
      sender: at.sender,
    });
    await settler.reply(delivery, reply);
    settle(task);
  }

  /**
   * Publishing an outcome failed. With the connection gone the broker takes
   * the delivery back by itself; otherwise give it back after a pause, so
   * another attempt (or, on a quorum queue, the delivery limit) decides.
   */
  function recover(task: Task, error: unknown): void {
    if (task.abandoned) return;
    log.error("Could not settle a task; returning it to the queue", {
      task_id: taskIdOf(task.delivery) ?? undefined,
      attempt: attemptOf(task.delivery),
      error,
    });
    setTimeout(() => {
      if (!task.abandoned) broker.nack(task.delivery, true);
    }, returnDelayMs);
  }

  function begin(delivery: Delivery): void {
    running++;
    stats.inFlight++;
    const task: Task = { delivery, abandoned: false, done: Promise.resolve() };
    tasks.add(task);
    task.done = process(task)
      .catch((error) => recover(task, error))
      .finally(() => {
        tasks.delete(task);
        running--;
        stats.inFlight--;
        const next = waiting.shift();
        if (next && !stopping) begin(next);
      });
  }

  function onDelivery(delivery: Delivery): void {
    if (stopping) {
      broker.nack(delivery, true);
      return;
    }
    stats.received++;
    if (running < concurrency) begin(delivery);
    else waiting.push(delivery);
  }

  // The control queue first: once the work queue shows this consumer, a
  // ping reaches this worker too.
  const control: ControlChannel = await serveControl(broker, {
    queue,
    log,
    // Only those who may call the function learn about its workers.
    accept: (delivery) => senderOf(delivery).allowed,
    info: () => ({
      kind: "pong",
      worker: workerId,
      function: info.name,
      queue,
      started_at: metrics.startedAt.toISOString(),
      uptime_ms: Date.now() - metrics.startedAt.getTime(),
      concurrency,
      tasks_done: stats.succeeded + stats.failed + stats.rejected + stats.expired +
        stats.unauthenticated,
      succeeded: stats.succeeded,
      failed: stats.failed,
      rejected: stats.rejected,
      retried: stats.retried,
      in_flight: stats.inFlight,
    }),
  });
  let consumer: Consumer;
  try {
    consumer = await broker.consume(queue, onDelivery, { prefetch });
  } catch (error) {
    await control.cancel().catch(() => {});
    throw error;
  }

  return {
    stats,
    async stop(graceMs: number): Promise<void> {
      stopping = true;
      await control.cancel().catch(() => {});
      await consumer.cancel().catch(() => {});
      for (const delivery of waiting.splice(0)) broker.nack(delivery, true);
      const all = () => Promise.all([...tasks].map((task) => task.done));
      let timer: ReturnType<typeof setTimeout> | undefined;
      const expired = await Promise.race([
        all().then(() => false),
        new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(true), graceMs)),
      ]);
      clearTimeout(timer);
      if (!expired) return;
      log.warn("Grace period over; returning unfinished tasks to the queue", {
        in_flight: tasks.size,
        grace_ms: graceMs,
      });
      for (const task of tasks) {
        task.abandoned = true;
        broker.nack(task.delivery, true);
      }
      runner.abortAll("The worker is stopping and the grace period is over");
    },
    abandon(): void {
      stopping = true;
      waiting.length = 0;
      for (const task of tasks) task.abandoned = true;
      runner.abortAll("The broker connection was lost");
    },
  };
}

/**
 * Declares one of the function's queues. RabbitMQ names only the first
 * argument that differs from an existing queue's; when the queue type
 * differs too, that is what an operator must hear about, so it is checked
 * on its own.
 */
async function declareOwn(broker: Broker, name: string, options: QueueOptions): Promise<void> {
  try {
    await broker.declareQueue(name, options);
  } catch (error) {
    if (!(error instanceof QueueMismatchError) || error.argument === "x-queue-type") throw error;
    await broker.declareQueue(name, { durable: true, type: options.type });
    throw error;
  }
}

/** The time limit of an attempt: the function's timeout, or the caller's deadline if sooner. */
function attemptLimit(timeoutMs: number, deadline: number | null): AttemptLimit {
  const untilDeadline = deadline === null ? Infinity : deadline - Date.now();
  if (untilDeadline < timeoutMs) {
    return {
      ms: Math.max(0, untilDeadline),
      type: "DeadlineExceeded",
      message: "Aborted the task at its deadline: the caller no longer waits for it",
    };
  }
  return {
    ms: timeoutMs,
    type: "TaskTimeout",
    message:
      `Aborted the attempt after ${timeoutMs} ms, the function's timeoutMs: make the handler faster, or raise timeoutMs`,
  };
}
