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

import {
  type Broker,
  type Consumer,
  type Delivery,
  QueueMismatchError,
  type QueueOptions,
} from "../../core/broker/broker.ts";
import {
  DASHBOARD_USER,
  deadLetterQueueOf,
  DEFAULT_MAX_MESSAGE_BYTES,
} from "../../core/contract/mod.ts";
import { type Logger, SILENT_LOGGER } from "../../core/log.ts";
import { type ControlChannel, serveControl } from "./control.ts";
import { attemptOf, type Task, taskIdOf } from "./delivery_facts.ts";
import { AnsweredTasks } from "./answered_tasks.ts";
import { createDeliveryHandler } from "./handle_delivery.ts";
import { WorkerMetrics, type WorkerStats } from "./metrics.ts";
import type { HandlerRunner } from "./runner.ts";
import { createSettler } from "./settle.ts";
import { NO_EVENTS, startTaskEvents } from "./task_events.ts";

export { twoDigits } from "./delivery_facts.ts";
export type { WorkerStats } from "./metrics.ts";

/** How many deliveries of one request a quorum queue allows unless `DELIVERY_LIMIT` says otherwise. */
export const DEFAULT_DELIVERY_LIMIT = 5;

/** The delivery limit of a dead-letter queue: as good as none, on RabbitMQ 3 and 4 alike. */
export const DEAD_LETTER_VIEWS = 2 ** 31;

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
   * The tasks this process answered, to answer copies of their requests
   * (delivered again after a lost connection) without running them; pass
   * the same one to every start of a worker process.
   * @default {new AnsweredTasks()}
   */
  answered?: AnsweredTasks;
  /**
   * Publish task events (started, retried, succeeded, failed, rejected) to
   * the events exchange, as Celery workers do with `-E`.
   * @default {false}
   */
  events?: boolean;
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

  const dlq = deadLetterQueueOf(queue);
  await declareOwn(broker, dlq, {
    durable: true,
    type: queueType,
    // Reading a letter without taking it (deno task dlq) returns it and
    // counts as a delivery: RabbitMQ 4's default limit of 20 would drop
    // letters viewed that often, and a dead-letter queue has no target.
    ...(queueType === "quorum" && { deliveryLimit: DEAD_LETTER_VIEWS }),
  });
  await declareOwn(broker, queue, {
    durable: true,
    type: queueType,
    deadLetterQueue: dlq,
    ...(queueType === "quorum" && { deliveryLimit: deliveryLimit + 1 }),
  });

  if (info.celeryNames.length > 0) await declareCeleryRoute(broker, queue);
  const emit = options.events ? await startTaskEvents(broker, log) : NO_EVENTS;
  const handler = createDeliveryHandler({
    runner,
    broker,
    settler,
    info,
    queue,
    workerId,
    queueType,
    deliveryLimit,
    maxBytes,
    senders,
    random,
    metrics,
    log,
    emit,
    answered: options.answered ?? new AnsweredTasks(),
  });

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
    task.done = handler.process(task)
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
    // Only those who may call the function learn about its workers, and
    // the dashboard, whose user may call nothing.
    accept: (delivery) =>
      delivery.properties.userId === DASHBOARD_USER || handler.senderOf(delivery, false).allowed,
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
      events: options.events === true,
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
 * The route Celery clients publish through: a direct exchange named after
 * the queue, bound to it with the queue's name as routing key. Only Celery
 * clients' broker users (and this worker's) may write to it, which is what
 * lets a Celery request that came through it run without `user_id`
 * (`handle_delivery.ts`). The binding is made at every start, so a queue
 * that was deleted and made again gets its route back; that takes the
 * write permission on the worker's own queue (ops/rabbitmq/definitions.ts).
 */
async function declareCeleryRoute(broker: Broker, queue: string): Promise<void> {
  await broker.declareExchange(queue, "direct", { durable: true });
  await broker.bindQueue(queue, queue, queue);
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
    // A queue of the other type is the likelier cause and the clearer
    // message; otherwise the argument first found to differ is the one to name
    // (this declaration, with fewer arguments, would name another).
    try {
      await broker.declareQueue(name, { durable: true, type: options.type });
    } catch (second) {
      if (second instanceof QueueMismatchError && second.argument === "x-queue-type") throw second;
    }
    throw error;
  }
}
