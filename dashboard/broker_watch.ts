/**
 * What the dashboard sees of the broker, as its own read-mostly user (see
 * `DASHBOARD_PERMISSIONS` in ops/rabbitmq/definitions.ts), over AMQP only:
 *
 * - each function's queue and dead letters: depth and consumers, by passive
 *   declarations every `pollMs`;
 * - the live workers: a ping on the control exchange every `pingMs`, whose
 *   answers count only from each function's broker user (as for `deno task
 *   status`);
 * - task events: an exclusive queue of its own bound to the events exchange,
 *   the first of the eight `dashboard.events.<n>` that no other dashboard
 *   holds (the broker lets the `dashboard` user declare no other).
 *   A worker's event counts only from its function's broker user, a
 *   caller's `task-sent` only from a caller's user (`callers`, never a
 *   function's), which is shown with it; on a broker where every party is
 *   `guest` both come from anyone. Others are counted as forged and
 *   dropped. Each kept event has the contract's fields only, bounded
 *   (`bound_task_event.ts`). On the same exchange, the active scheduler
 *   replica's note says which one fires, from the scheduler's user only.
 *
 * @module
 */

import { type Broker, BrokerUnavailableError } from "../core/broker/mod.ts";
import {
  deadLetterQueueOf,
  EVENTS_EXCHANGE,
  parseSchedulerNote,
  parseTaskEvent,
  SCHEDULER_ACTIVE_TYPE,
  type SchedulerNote,
  type TaskEvent,
  type WorkerInfo,
} from "../core/contract/mod.ts";
import type { FunctionRoute } from "../core/registry.ts";
import { DEFAULT_CALLERS, SCHEDULER_USER } from "../core/contract/users.ts";
import { isExpectedSender } from "../client/protocol.ts";
import { TaskClient } from "../client/task_client.ts";
import { DASHBOARD_EVENT_QUEUES } from "../ops/rabbitmq/definitions.ts";
import { boundTaskEvent } from "./bound_task_event.ts";

/** A task event as received, with the broker user that published it. */
export interface SeenEvent extends TaskEvent {
  /** The publisher's `user_id`, verified by RabbitMQ; `null` when absent. */
  sender: string | null;
}

/** A function's queue and dead letters, as last polled. */
export interface QueueView {
  function: string;
  queue: string;
  /** The broker user its workers run as. */
  user: string;
  /** False until a worker declared the queue. */
  exists: boolean;
  messages: number | null;
  consumers: number | null;
  deadLetters: number | null;
}

/** Each function's queue before anything is known of it. */
export function unknownQueues(functions: ReadonlyMap<string, FunctionRoute>): QueueView[] {
  return [...functions].map(([name, route]) => ({
    function: name,
    queue: route.queue,
    user: route.user,
    exists: false,
    messages: null,
    consumers: null,
    deadLetters: null,
  }));
}

/** Options for {@linkcode startBrokerWatch}. */
export interface BrokerWatchOptions {
  functions: ReadonlyMap<string, FunctionRoute>;
  /** @default {2000} */
  pollMs?: number;
  /** @default {5000} */
  pingMs?: number;
  /**
   * Broker users whose `task-sent` events count: the callers. A function's
   * own user never counts for them.
   * @default {DEFAULT_CALLERS}
   */
  callers?: readonly string[];
  /** Receives each accepted task event. */
  onEvent: (event: SeenEvent) => void;
  /** Receives the active scheduler replica's note, from the scheduler's user only. */
  onScheduler?: (note: SchedulerNote) => void;
  /** Told after each poll or ping. */
  onChange: () => void;
}

/** A running watch. */
export interface BrokerWatch {
  queues(): QueueView[];
  workers(): WorkerInfo[];
  /** Worker events dropped as their sender is not the function's user. */
  readonly forgedEvents: number;
  /** Worker answers to the ping dropped for the same reason. */
  readonly forgedPongs: number;
  /** Polls the queues now (after a replay, say). */
  poll(): Promise<void>;
  stop(): Promise<void>;
}

/** How long an event waits in the dashboard's queue before the broker drops it. */
const EVENT_TTL_MS = 60_000;

/**
 * Declares the first of {@linkcode DASHBOARD_EVENT_QUEUES} that no other
 * connection holds, exclusive to this one, and returns its name.
 */
export async function claimEventsQueue(broker: Broker): Promise<string> {
  for (const name of DASHBOARD_EVENT_QUEUES) {
    try {
      await broker.declareQueue(name, {
        durable: false,
        exclusive: true,
        autoDelete: true,
        messageTtlMs: EVENT_TTL_MS,
      });
      return name;
    } catch (error) {
      // RESOURCE_LOCKED: another dashboard's connection holds it (or left it
      // declared otherwise, until the broker's policy removes it).
      if (error instanceof TypeError && /exclusively/.test(error.message)) continue;
      throw error;
    }
  }
  throw new BrokerUnavailableError(
    `Cannot receive task events as the ${DASHBOARD_EVENT_QUEUES.length} queues a dashboard may use (${
      DASHBOARD_EVENT_QUEUES[0]
    } to ${DASHBOARD_EVENT_QUEUES.at(-1)}) are held by other connections: stop another dashboard`,
  );
}

/** Starts watching; rejects when the broker refuses the first steps. */
export async function startBrokerWatch(
  broker: Broker,
  options: BrokerWatchOptions,
): Promise<BrokerWatch> {
  const { functions } = options;
  let queues = unknownQueues(functions);
  let workers: WorkerInfo[] = [];
  let forgedEvents = 0;
  let forgedPongs = 0;
  let stopped = false;
  const userOf = (fn: string) => functions.get(fn)?.user;
  const queueNames = new Set([...functions.values()].map((route) => route.queue));
  const workerUsers = new Set([...functions.values()].map((route) => route.user));
  const callers = new Set(options.callers ?? DEFAULT_CALLERS);

  // RabbitMQ 4.2.6 and later refuse a passive declaration to a user with no
  // permission on the queue, and the dashboard's user has none on the
  // functions' queues (ops/rabbitmq/definitions.ts says why): their depths
  // then stay unknown, and the rest of the page goes on.
  const inspect = (name: string) =>
    broker.inspectQueue(name).catch((error) => {
      if (error instanceof BrokerUnavailableError && /refused access/.test(error.message)) {
        return undefined;
      }
      throw error;
    });

  async function poll(): Promise<void> {
    const next: QueueView[] = [];
    for (const view of queues) {
      const info = await inspect(view.queue);
      const dlq = await inspect(deadLetterQueueOf(view.queue));
      if (info === undefined) {
        next.push({ ...view, messages: null, consumers: null, deadLetters: null });
        continue;
      }
      next.push({
        ...view,
        exists: info !== null,
        messages: info?.messages ?? null,
        consumers: info?.consumers ?? null,
        deadLetters: dlq?.messages ?? null,
      });
    }
    queues = next;
    options.onChange();
  }

  const client = await TaskClient.open(broker, { functions });
  async function ping(): Promise<void> {
    const result = await client.ping({ timeoutMs: 1500 });
    // Only the configured functions' workers: others may share the broker.
    workers = result.workers.filter((w) => queueNames.has(w.queue));
    forgedPongs += result.unexpected;
    options.onChange();
  }

  function accept(event: TaskEvent, sender: string | undefined): boolean {
    const user = userOf(event.function);
    if (user === undefined) return false;
    if (event.kind !== "task-sent") return isExpectedSender(sender, user, broker.user);
    // A worker that sent "sent" events would keep sent times of tasks that never end.
    if (sender !== undefined && workerUsers.has(sender) && sender !== broker.user) return false;
    return sender !== undefined && callers.has(sender) ||
      isExpectedSender(sender, broker.user, broker.user);
  }

  await broker.declareExchange(EVENTS_EXCHANGE, "fanout", { durable: true });
  const eventsQueue = await claimEventsQueue(broker);
  await broker.bindQueue(eventsQueue, EVENTS_EXCHANGE);
  const consumer = await broker.consume(eventsQueue, (delivery) => {
    broker.ack(delivery);
    if (delivery.properties.type === SCHEDULER_ACTIVE_TYPE) {
      const note = parseSchedulerNote(delivery.body);
      if (note && isExpectedSender(delivery.properties.userId, SCHEDULER_USER, broker.user)) {
        options.onScheduler?.(note);
      }
      return;
    }
    const parsed = parseTaskEvent(delivery.body);
    if (!parsed.ok) return;
    const event = boundTaskEvent(parsed.value);
    if (event === undefined) return;
    const sender = delivery.properties.userId;
    if (!accept(event, sender)) {
      if (functions.has(event.function)) forgedEvents++;
      return;
    }
    options.onEvent({ ...event, sender: sender ?? null });
  }, { prefetch: 200 });

  // Each loop waits for its own round to end before the next, so a slow
  // broker never piles requests up; stop() cuts the pauses short.
  const wakers = new Set<() => void>();
  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        wakers.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      wakers.add(wake);
    });
  const loop = (every: number, round: () => Promise<void>) =>
    (async () => {
      while (!stopped) {
        await round().catch(() => {
          // The connection is going: the supervisor sees it close and reconnects.
        });
        if (!stopped) await pause(every);
      }
    })();
  await poll();
  const loops = [
    loop(options.pollMs ?? 2000, poll),
    loop(options.pingMs ?? 5000, ping),
  ];

  return {
    queues: () => queues,
    workers: () => workers,
    get forgedEvents() {
      return forgedEvents;
    },
    get forgedPongs() {
      return forgedPongs;
    },
    poll,
    async stop() {
      stopped = true;
      for (const wake of [...wakers]) wake();
      await client.close();
      await consumer.cancel().catch(() => {});
      // A round in flight ends with the connection at the latest.
      await Promise.all(loops);
    },
  };
}
