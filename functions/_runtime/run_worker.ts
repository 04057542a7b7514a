/**
 * The worker runtime: turns a {@linkcode FunctionDefinition} into a consumer
 * of its one queue. Every delivery is settled exactly one way, and only after
 * its outcome is safely with the broker:
 *
 * - a request that breaks the contract is dead-lettered, answered with an
 *   error reply (when it has `reply_to`), then acknowledged;
 * - a success is answered, then acknowledged;
 * - a retryable failure with retries left is re-published to a delay queue
 *   whose TTL dead-letters it back to the work queue, then acknowledged, so a
 *   waiting retry holds no worker and survives a crash;
 * - any other failure is dead-lettered, answered, then acknowledged.
 *
 * A crash before the acknowledgement leaves the message with the broker,
 * which delivers it again; callers ignore a second reply by correlation id.
 *
 * @module
 */

import { backoffDelay } from "./backoff.ts";
import {
  type Broker,
  BrokerUnavailableError,
  type Consumer,
  type Delivery,
  type QueueOptions,
} from "./broker.ts";
import {
  ATTEMPT_HEADER,
  DEFAULT_MAX_MESSAGE_BYTES,
  encodeProgress,
  encodeReply,
  type Message,
  parseRequest,
  type ProgressEvent,
  type TaskError,
  type TaskReply,
  type TaskRequest,
} from "./contract.ts";
import {
  type FunctionDefinition,
  NonRetryableError,
  type RetryPolicy,
  type TaskContext,
} from "./define_function.ts";
import { type Logger, SILENT_LOGGER } from "./log.ts";
import { type ControlChannel, serveControl } from "./control.ts";
import { WorkerMetrics, type WorkerStats } from "./metrics.ts";

export type { WorkerStats } from "./metrics.ts";

/** Options for {@linkcode startWorker}. */
export interface WorkerOptions {
  /** Identifies this worker in replies and logs: function name plus host. */
  workerId: string;
  /**
   * The queue to consume.
   * @default {definition.queue}
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
   * Largest request body accepted, in bytes.
   * @default {DEFAULT_MAX_MESSAGE_BYTES}
   */
  maxMessageBytes?: number;
  /**
   * Queue type of the work queue, its dead letters and its retries.
   * @default {"classic"}
   */
  queueType?: "classic" | "quorum";
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

/** The name of a function's dead-letter queue. */
export function deadLetterQueueOf(queue: string): string {
  return `${queue}.dlq`;
}

/** The name of the queue that holds a retry for `delayMs` before returning it to `queue`. */
export function retryQueueOf(queue: string, delayMs: number): string {
  return `${queue}.retry.${delayMs}`;
}

// Retry queues are deleted this long after their last use, so that delays
// nobody uses any more leave no queues behind. Every retry redeclares its
// queue, so a queue holding a message is never this idle.
const RETRY_QUEUE_IDLE_MS = 60_000;

// Jitter takes one of this many evenly spaced steps, so a policy maps to a
// bounded set of delay queues.
const JITTER_STEPS = 20;

/** Dead-letter reasons, as in the `x-dlq-reason` header. */
export type DeadLetterReason = "rejected" | "exhausted" | "non_retryable";

interface Task {
  delivery: Delivery;
  /** Set once the message went back to the broker unfinished. */
  abandoned: boolean;
  /** Made when the handler first reads its signal: most never do. */
  controller?: AbortController;
  /** Why the task was aborted, for a signal made afterwards. */
  abortReason?: unknown;
  done: Promise<void>;
}

function controllerOf(task: Task): AbortController {
  if (!task.controller) {
    task.controller = new AbortController();
    if (task.abortReason !== undefined) task.controller.abort(task.abortReason);
  }
  return task.controller;
}

function abortTask(task: Task, reason: unknown): void {
  task.abortReason = reason;
  task.controller?.abort(reason);
}

function attemptOf(delivery: Delivery): number {
  const value = Number(delivery.properties.headers?.[ATTEMPT_HEADER]);
  return Number.isInteger(value) && value >= 1 ? value : 1;
}

function taskIdOf(message: Message): string | null {
  return message.properties.messageId ?? message.properties.correlationId ?? null;
}

function peekTask(body: Uint8Array): string | null {
  try {
    const task = JSON.parse(new TextDecoder().decode(body))?.task;
    return typeof task === "string" ? task : null;
  } catch {
    return null;
  }
}

/** Describes a thrown value as a reply's `error`. */
export function toTaskError(error: unknown): TaskError {
  if (error instanceof Error) return { type: error.name || "Error", message: error.message };
  return { type: "Error", message: String(error) };
}

function policyFor(definition: FunctionDefinition, request: TaskRequest): RetryPolicy {
  const { retry } = request;
  return {
    ...definition.retry,
    ...(retry.max_retries !== undefined && { maxRetries: retry.max_retries }),
    ...(retry.base_delay_ms !== undefined && { baseDelayMs: retry.base_delay_ms }),
    ...(retry.factor !== undefined && { factor: retry.factor }),
    ...(retry.max_delay_ms !== undefined && { maxDelayMs: retry.max_delay_ms }),
  };
}

/** Thrown when a handler's result cannot be sent as JSON; retrying would not help. */
class InvalidResultError extends NonRetryableError {
  constructor(detail: string) {
    super(`Cannot send the handler's result as JSON: ${detail}: return JSON-compatible data`);
    this.name = "InvalidResult";
  }
}

function toJsonResult(value: unknown): unknown {
  if (value === undefined || value === null) return null;
  // The common results need no round trip through JSON.
  if (typeof value === "string" || typeof value === "boolean") return value;
  if (typeof value === "number") return Number.isFinite(value) ? value : null;
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (error) {
    throw new InvalidResultError((error as Error).message);
  }
  if (text === undefined) throw new InvalidResultError(`it is ${typeof value}`);
  return JSON.parse(text);
}

/**
 * Declares the function's queues and starts consuming. The returned worker
 * runs until {@linkcode RunningWorker.stop} or until the broker connection
 * ends (then call {@linkcode RunningWorker.abandon}).
 */
export async function startWorker(
  definition: FunctionDefinition,
  broker: Broker,
  options: WorkerOptions,
): Promise<RunningWorker> {
  const queue = options.queue ?? definition.queue;
  const concurrency = options.concurrency ?? 1;
  const prefetch = options.prefetch ?? concurrency;
  const maxBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  const random = options.random ?? Math.random;
  const queueType = options.queueType ?? "classic";
  const workerId = options.workerId;
  const log = (options.log ?? SILENT_LOGGER).child({
    function: definition.name,
    queue,
    worker: workerId,
  });
  const dlq = deadLetterQueueOf(queue);
  const metrics = options.metrics ?? new WorkerMetrics();
  const stats: WorkerStats = metrics.stats;
  const tasks = new Set<Task>();
  const waiting: Delivery[] = [];
  let running = 0;
  let stopping = false;

  await broker.declareQueue(queue, { durable: true, type: queueType });
  await broker.declareQueue(dlq, { durable: true, type: queueType });

  async function reply(delivery: Delivery, reply: TaskReply): Promise<void> {
    const { replyTo, correlationId } = delivery.properties;
    if (!replyTo) return;
    await broker.publish(replyTo, encodeReply(reply, correlationId));
  }

  function sendProgress(
    delivery: Delivery,
    request: TaskRequest,
    event: ProgressEvent,
    attempt: number,
    extra: { error?: TaskError; delay_ms?: number; max_retries?: number } = {},
  ): void {
    const { replyTo, correlationId } = delivery.properties;
    if (!request.progress || !replyTo) return;
    const message = encodeProgress({
      task_id: taskIdOf(delivery),
      task: request.task,
      event,
      worker: workerId,
      queue,
      attempt,
      at: new Date().toISOString(),
      ...extra,
    }, correlationId);
    broker.publish(replyTo, message).catch((error) =>
      log.debug("Could not send a progress event", { task_id: taskIdOf(delivery), error })
    );
  }

  async function deadLetter(
    delivery: Delivery,
    reason: DeadLetterReason,
    error: TaskError,
    attempts: number,
  ): Promise<void> {
    await broker.publish(dlq, {
      body: delivery.body,
      properties: {
        ...delivery.properties,
        persistent: true,
        headers: {
          ...delivery.properties.headers,
          "x-dlq-reason": reason,
          "x-dlq-error-type": error.type,
          "x-dlq-error-message": error.message,
          "x-dlq-attempts": attempts,
          "x-dlq-queue": queue,
          "x-dlq-worker": workerId,
          "x-dlq-at": new Date().toISOString(),
        },
      },
    });
  }

  async function scheduleRetry(delivery: Delivery, nextAttempt: number, delayMs: number) {
    const retryQueue = retryQueueOf(queue, delayMs);
    const retryOptions: QueueOptions = {
      durable: true,
      type: queueType,
      messageTtlMs: delayMs,
      deadLetterQueue: queue,
      expiresMs: delayMs + RETRY_QUEUE_IDLE_MS,
    };
    await broker.declareQueue(retryQueue, retryOptions);
    await broker.publish(retryQueue, {
      body: delivery.body,
      properties: {
        ...delivery.properties,
        persistent: true,
        headers: { ...delivery.properties.headers, [ATTEMPT_HEADER]: nextAttempt },
      },
    });
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
      result: unknown,
      error: TaskError | null,
      task: string | null,
    ): TaskReply => ({
      task_id: taskId,
      task,
      status,
      result,
      error,
      worker: workerId,
      queue,
      attempts: attempt,
      started_at: startedAt.toISOString(),
      finished_at: new Date().toISOString(),
      duration_ms: elapsed(),
    });

    const parsed = parseRequest(delivery, { task: definition.name, maxBytes });
    if (!parsed.ok) {
      stats.rejected++;
      const refusal = outcome("error", null, parsed.error, peekTask(delivery.body));
      logOf().warn("Rejected a request that breaks the contract", {
        status: "rejected",
        error: parsed.error.message,
        error_type: parsed.error.type,
        duration_ms: refusal.duration_ms,
      });
      await deadLetter(delivery, "rejected", parsed.error, attempt);
      await reply(delivery, refusal);
      settle(task);
      return;
    }
    const request = parsed.value;
    log.debug("Task started", ids);
    sendProgress(delivery, request, "started", attempt);
    const context: TaskContext = {
      taskId,
      attempt,
      worker: workerId,
      get signal() {
        return controllerOf(task).signal;
      },
      // Made on first use: most handlers never log.
      get log() {
        return logOf();
      },
    };
    let result: unknown;
    try {
      result = await definition.handler(request.payload, context);
      if (!task.abandoned) result = toJsonResult(result);
    } catch (thrown) {
      if (task.abandoned) return;
      const error = toTaskError(thrown);
      const policy = policyFor(definition, request);
      // A denied permission stays denied: retrying would only repeat it.
      const retryable = !(thrown instanceof NonRetryableError) &&
        !(thrown instanceof Deno.errors.NotCapable);
      if (retryable && attempt <= policy.maxRetries) {
        const delayMs = backoffDelay(
          attempt,
          policy,
          () => Math.floor(random() * (JITTER_STEPS + 1)) / JITTER_STEPS,
        );
        await scheduleRetry(delivery, attempt + 1, delayMs);
        stats.retried++;
        logOf().info("Task failed; retrying", {
          status: "retry",
          error: error.message,
          error_type: error.type,
          duration_ms: elapsed(),
          delay_ms: delayMs,
          retry: attempt,
          max_retries: policy.maxRetries,
        });
        sendProgress(delivery, request, "retry", attempt, {
          error,
          delay_ms: delayMs,
          max_retries: policy.maxRetries,
        });
        settle(task);
        return;
      }
      stats.failed++;
      const reason: DeadLetterReason = retryable ? "exhausted" : "non_retryable";
      const reply_ = outcome("error", null, error, request.task);
      metrics.observe("error", reply_.duration_ms);
      logOf().warn("Task failed", {
        status: "error",
        error: error.message,
        error_type: error.type,
        reason,
        duration_ms: reply_.duration_ms,
      });
      await deadLetter(delivery, reason, error, attempt);
      await reply(delivery, reply_);
      settle(task);
      return;
    }
    if (task.abandoned) return;
    stats.succeeded++;
    const success = outcome("success", result, null, request.task);
    metrics.observe("success", success.duration_ms);
    // The reply goes first: the caller waits for it, not for the log line.
    const replied = reply(delivery, success);
    log.info("Task succeeded", { ...ids, status: "success", duration_ms: success.duration_ms });
    await replied;
    settle(task);
  }

  function begin(delivery: Delivery): void {
    running++;
    stats.inFlight++;
    const task: Task = {
      delivery,
      abandoned: false,
      done: Promise.resolve(),
    };
    tasks.add(task);
    task.done = process(task)
      .catch((error) => {
        // Only the broker can fail here (a reply, retry or dead letter not
        // confirmed). Leave the message unacknowledged: when the connection
        // ends the broker delivers it again.
        if (!task.abandoned) {
          log.error("Could not settle a task; the broker will deliver it again", {
            task_id: taskIdOf(delivery) ?? undefined,
            attempt: attemptOf(delivery),
            error,
          });
        }
      })
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
    info: () => ({
      kind: "pong",
      worker: workerId,
      function: definition.name,
      queue,
      started_at: metrics.startedAt.toISOString(),
      uptime_ms: Date.now() - metrics.startedAt.getTime(),
      concurrency,
      tasks_done: stats.succeeded + stats.failed + stats.rejected,
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
        abortTask(task, new Error("The worker is stopping and the grace period is over"));
      }
    },
    abandon(): void {
      stopping = true;
      waiting.length = 0;
      for (const task of tasks) {
        task.abandoned = true;
        abortTask(task, new BrokerUnavailableError("The broker connection was lost"));
      }
    },
  };
}

/** Options for {@linkcode runWorker}. */
export interface RunWorkerOptions extends WorkerOptions {
  /** Opens a broker connection; called again after each loss. */
  connect: () => Promise<Broker>;
  /** Aborting it stops the worker gracefully. */
  signal: AbortSignal;
  /**
   * How long running handlers may take to finish after a stop.
   * @default {10_000}
   */
  graceMs?: number;
  /** Told each time the worker starts or stops consuming. */
  onConsuming?: (consuming: boolean, worker: RunningWorker | undefined) => void;
}

/** How reconnection attempts are spaced: from 0.5 s up to 15 s. */
export const RECONNECT_POLICY = { baseDelayMs: 500, factor: 2, maxDelayMs: 15_000, jitter: 0.2 };

function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

/**
 * Runs a function as a worker until `signal` is aborted: connects (retrying
 * with backoff, one log line per attempt), consumes, reconnects after a lost
 * connection, and on abort drains within the grace period and closes.
 * Rejects only for a fault no reconnection can fix, such as a queue that
 * exists with other settings.
 */
export async function runWorker(
  definition: FunctionDefinition,
  options: RunWorkerOptions,
): Promise<void> {
  const { signal, connect } = options;
  const log = (options.log ?? SILENT_LOGGER).child({
    function: definition.name,
    queue: options.queue ?? definition.queue,
    worker: options.workerId,
  });
  // One set of counters for the life of the process, whatever the reconnections.
  const metrics = options.metrics ?? new WorkerMetrics();
  let failures = 0;
  while (!signal.aborted) {
    let broker: Broker;
    try {
      broker = await connect();
    } catch (error) {
      if (!(error instanceof BrokerUnavailableError)) throw error;
      failures++;
      const delay = backoffDelay(failures, RECONNECT_POLICY);
      log.warn("Broker not reachable; retrying", {
        attempt: failures,
        retry_in_ms: delay,
        error: error.message,
      });
      await pause(delay, signal);
      continue;
    }
    let worker: RunningWorker;
    try {
      worker = await startWorker(definition, broker, { ...options, metrics });
    } catch (error) {
      await broker.close();
      if (!(error instanceof BrokerUnavailableError)) throw error;
      failures++;
      log.warn("Could not start consuming; retrying", { attempt: failures, error: error.message });
      await pause(backoffDelay(failures, RECONNECT_POLICY), signal);
      continue;
    }
    failures = 0;
    log.info("Consuming", {
      prefetch: options.prefetch ?? options.concurrency ?? 1,
      concurrency: options.concurrency ?? 1,
    });
    options.onConsuming?.(true, worker);
    const stopped = new Promise<"stop">((resolve) => {
      if (signal.aborted) resolve("stop");
      signal.addEventListener("abort", () => resolve("stop"), { once: true });
    });
    const outcome = await Promise.race([broker.closed, stopped]);
    options.onConsuming?.(false, worker);
    if (outcome === "stop") {
      log.info("Stopping: finishing tasks in flight", { in_flight: worker.stats.inFlight });
      await worker.stop(options.graceMs ?? 10_000);
      await broker.close();
      log.info("Stopped", { ...worker.stats });
      return;
    }
    worker.abandon();
    failures = 1;
    log.warn("Lost the broker connection; reconnecting", {
      error: outcome?.message ?? "closed",
    });
    await pause(backoffDelay(failures, RECONNECT_POLICY), signal);
  }
  log.info("Stopped while not connected");
}
