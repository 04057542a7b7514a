/**
 * The consumer of a function's queue: turns a function (through its
 * {@linkcode HandlerRunner}) into a consumer of its one queue, each delivery
 * handled by `delivery.ts`. Every delivery is settled exactly one
 * way, and only after its outcome is safely with the broker:
 *
 * - a request from a sender the function does not accept is dead-lettered
 *   (`unauthenticated`) and never run;
 * - one whose `reply_to` is no place for answers is dead-lettered
 *   (`invalid_reply_to`) and never run;
 * - an event that came through a binding none of the function's triggers
 *   makes is dead-lettered (`untriggered`) and never run;
 * - one the broker delivered `deliveryLimit` times without a settlement (the
 *   worker or its sandbox died, or the worker could not settle it, each
 *   time) is dead-lettered (`delivery_limit`);
 * - one that breaks the contract is dead-lettered (`rejected`) and answered;
 * - one past its deadline is dead-lettered (`expired`) and answered, unrun;
 * - a success is answered;
 * - a retryable failure with retries left (and time before the deadline) is
 *   re-published to a delay queue whose TTL returns it to the work queue;
 * - any other failure is dead-lettered and answered;
 *
 * and then acknowledged. A reply the broker refuses (the caller's queue is
 * full) is the caller's loss: counted, logged, and the request is settled
 * all the same. If publishing a retry or a dead letter fails, the delivery
 * goes back to the queue as a failed delivery (`basic.reject`, which every
 * RabbitMQ version counts toward the delivery limit), or, when the
 * connection is gone, the broker takes it back: no delivery is ever held
 * unsettled, and none loops for ever on a quorum queue.
 *
 * A delivery the worker hands back unfinished, not by its own fault (the
 * worker stops, or the sandbox was restarted under it for another task's
 * hung handler), is copied back to the queue and acknowledged: RabbitMQ
 * before 4.3 would count a `basic.nack` toward the delivery limit, and
 * dead-letter a healthy task handed back often enough. One whose sandbox
 * crashed under it goes back as a failed delivery, as if its worker had
 * died: it may be the cause, and must not loop for ever.
 *
 * Every queue the worker needs is declared while it starts: its work and
 * dead-letter queues, a retry queue per delay of the ladder
 * (`RETRY_DELAYS_MS`), the route of each protocol the function speaks
 * (`protocols/`), and its control queue, which alone may be refused
 * without stopping it (pings go unanswered until it opens).
 *
 * @module
 */

import type { BackoffPolicy } from "../../core/backoff.ts";
import {
  type Broker,
  type Delivery,
  QueueMismatchError,
  type QueueOptions,
} from "../../core/broker/broker.ts";
import {
  DASHBOARD_USER,
  deadLetterQueueOf,
  DEFAULT_MAX_MESSAGE_BYTES,
  RETRY_DELAYS_MS,
  retryQueueOf,
} from "../../core/contract/mod.ts";
import { type Logger, SILENT_LOGGER } from "../../core/log.ts";
import { DEAD_LETTER_VIEWS, DEFAULT_DELIVERY_LIMIT } from "../defaults.ts";
import type { HandlerRunner } from "../handler_runner.ts";
import { CancelledCalls, serveCancellations } from "./cancellations.ts";
import { type ControlChannel, serveControl } from "./control.ts";
import { createDeliveryHandler, type DeliveryHandlerOptions, type Task } from "./delivery.ts";
import { NO_EVENTS, startTaskEvents, WorkerMetrics, type WorkerStats } from "./observe.ts";
import { declareWorkerRoutes } from "./protocols/mod.ts";
import { retryQueueOptions } from "./settle.ts";
import { openStepDown, type StepDown } from "./step_down.ts";

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
   * Handlers running at once. While a handler holds the sandbox's thread,
   * the worker takes one at a time (`step_down.ts`).
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
   * How long a stepped-down worker waits without a held sandbox before it
   * takes its full window again.
   * @default {STEP_UP_AFTER_MS}
   */
  stepUpAfterMs?: number;
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
  answered?: DeliveryHandlerOptions["answered"];
  /**
   * The cancellations this process read (`cancellations.ts`); pass the same
   * one to every start of a worker process, so that a reconnection forgets
   * none.
   * @default {new CancelledCalls()}
   */
  cancelled?: CancelledCalls;
  /**
   * Publish task events (started, retried, succeeded, failed, rejected) to
   * the events exchange, for `deno task dashboard`.
   * @default {false}
   */
  events?: boolean;
  /**
   * How long a delivery whose outcome could not be published waits before
   * it goes back to the queue, so that a persistent fault does not spin.
   * @default {1000}
   */
  returnDelayMs?: number;
  /**
   * The longest wait an eta (`protocols/protocol.ts`) may ask for; a later one is refused.
   * @default {DEFAULT_MAX_ETA_MS} (7 days)
   */
  maxEtaMs?: number;
  /**
   * How attempts to open a control queue the broker refused are spaced.
   * @default {RECONNECT_POLICY}
   */
  controlRetry?: BackoffPolicy;
  /**
   * Topic patterns of the events that run the function: the queue is bound
   * to the events exchange with each at start (docs/events.md).
   * @default {[]}
   */
  triggers?: readonly string[];
  /** The event type each successful result is emitted as (`protocols/chain.ts`), if any. */
  emits?: string;
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
  const workerId = options.workerId;
  const log = (options.log ?? SILENT_LOGGER).child({
    function: info.name,
    queue,
    worker: workerId,
  });
  const metrics = options.metrics ?? new WorkerMetrics();
  const stats: WorkerStats = metrics.stats;
  const tasks = new Set<Task>();
  const waiting: Delivery[] = [];
  /** Hand-backs under way while stopping: stop() resolves once each is settled. */
  const returning = new Set<Promise<void>>();
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

  const retryDelays = await declareRetryQueues(broker, queue, queueType, log);
  await declareWorkerRoutes(broker, queue, info, options.triggers ?? []);
  const emit = options.events ? await startTaskEvents(broker, log) : NO_EVENTS;
  const cancelled = options.cancelled ?? new CancelledCalls();
  const handler = createDeliveryHandler({
    runner,
    broker,
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
    answered: options.answered,
    cancelled,
    retryDelays,
    maxEtaMs: options.maxEtaMs,
    returnDelayMs: options.returnDelayMs ?? 1000,
    emits: options.emits,
    triggers: options.triggers ?? [],
  });

  let intake: StepDown | undefined;

  function begin(delivery: Delivery): void {
    running++;
    stats.inFlight++;
    const task: Task = { delivery, abandoned: false, done: Promise.resolve() };
    tasks.add(task);
    task.done = handler.process(task).finally(() => {
      tasks.delete(task);
      running--;
      stats.inFlight--;
      pump();
    });
  }

  /** Starts what waits, first come first, as far as the window allows now. */
  function pump(): void {
    const limit = intake?.concurrency ?? concurrency;
    while (!stopping && running < limit && waiting.length > 0) begin(waiting.shift()!);
  }

  /** Hands a delivery that never started back to the queue, as a copy. */
  function handBackUnstarted(delivery: Delivery): void {
    const back = handler.handBack({ delivery, abandoned: false, done: Promise.resolve() });
    returning.add(back);
    back.finally(() => returning.delete(back));
  }

  function onDelivery(delivery: Delivery): void {
    if (stopping) return handBackUnstarted(delivery);
    stats.received++;
    waiting.push(delivery);
    pump();
  }

  // The control queue first: once the work queue shows this consumer, a
  // ping reaches this worker too (unless the broker refused the queue).
  const control: ControlChannel = await serveControl(broker, {
    queue,
    log,
    onRefused: () => stats.repliesRefused++,
    retry: options.controlRetry,
    // Only those who may call the function learn about its workers, and
    // the dashboard, whose user may call nothing.
    accept: (delivery) =>
      delivery.properties.userId === DASHBOARD_USER || handler.senderOf(delivery).allowed,
    info: () => ({
      kind: "pong",
      worker: workerId,
      function: info.name,
      queue,
      started_at: metrics.startedAt.toISOString(),
      uptime_ms: Date.now() - metrics.startedAt.getTime(),
      concurrency,
      tasks_done: stats.succeeded + stats.failed + stats.rejected + stats.expired +
        stats.unauthenticated + stats.invalidReplyTo + stats.cancelled + stats.untriggered,
      succeeded: stats.succeeded,
      failed: stats.failed,
      rejected: stats.rejected,
      retried: stats.retried,
      in_flight: stats.inFlight,
      events: options.events === true,
    }),
  });
  // Before the work queue: a request that was cancelled while no worker
  // listened is known to be before it is taken.
  const cancellations = await serveCancellations(broker, {
    record: cancelled,
    cancelRunning: (taskId, by) => handler.cancelRunning(taskId, by),
    finished: (taskId) => handler.finished(taskId),
    worker: workerId,
    function: info.name,
    log,
  }).catch(async (error) => {
    await control.cancel().catch(() => {});
    throw error;
  });
  try {
    intake = await openStepDown({
      runner,
      consume: (prefetch) => broker.consume(queue, onDelivery, { prefetch }),
      prefetch,
      concurrency,
      handBackWaiting: () => waiting.splice(0).forEach(handBackUnstarted),
      resume: pump,
      onStepDown: () => stats.stepsDown++,
      log,
      stepUpAfterMs: options.stepUpAfterMs,
    });
  } catch (error) {
    await control.cancel().catch(() => {});
    await cancellations.cancel().catch(() => {});
    throw error;
  }
  const consumer = intake;

  return {
    stats,
    async stop(graceMs: number): Promise<void> {
      stopping = true;
      await control.cancel().catch(() => {});
      await cancellations.cancel().catch(() => {});
      await consumer.close().catch(() => {});
      waiting.splice(0).forEach(handBackUnstarted);
      const all = () => Promise.all([...tasks].map((task) => task.done));
      let timer: ReturnType<typeof setTimeout> | undefined;
      const expired = await Promise.race([
        all().then(() => false),
        new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(true), graceMs)),
      ]);
      clearTimeout(timer);
      if (expired) {
        log.warn("Grace period over; returning unfinished tasks to the queue", {
          in_flight: tasks.size,
          grace_ms: graceMs,
        });
        for (const task of tasks) returning.add(handler.handBack(task));
        runner.abortAll("The worker is stopping and the grace period is over");
      }
      await Promise.all(returning);
    },
    abandon(): void {
      stopping = true;
      waiting.length = 0;
      // Its step-up timer must not open a consumer on the lost connection.
      consumer.close().catch(() => {});
      for (const task of tasks) task.abandoned = true;
      runner.abortAll("The broker connection was lost");
    },
  };
}

/**
 * Declares a retry queue for each delay of the ladder, and returns the
 * delays whose queue is there to use. A queue of the same name left by an
 * earlier version (made on demand, with `x-expires`) cannot be declared
 * again as it is now: its delay is left out until that queue has expired
 * by itself. Should the broker refuse a new one (its queue limit reached),
 * the worker still starts, with the delays it has; with none, it cannot.
 */
async function declareRetryQueues(
  broker: Broker,
  queue: string,
  type: "classic" | "quorum",
  log: Logger,
): Promise<number[]> {
  const usable: number[] = [];
  const missing: { delay: number; error: unknown }[] = [];
  for (const delay of RETRY_DELAYS_MS) {
    try {
      await broker.declareQueue(retryQueueOf(queue, delay), retryQueueOptions(queue, delay, type));
      usable.push(delay);
    } catch (error) {
      missing.push({ delay, error });
    }
  }
  if (usable.length === 0) throw missing[0].error;
  if (missing.length > 0) {
    log.warn("Cannot declare some retry queues; retries round to the delays that remain", {
      delays_ms: missing.map(({ delay }) => delay),
      error: missing[0].error,
    });
  }
  return usable;
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
