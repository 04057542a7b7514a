/**
 * One scheduler replica on one broker connection. Every replica consumes
 * the single-active-consumer queue `tasks.scheduler`, so RabbitMQ feeds one
 * of them only; the queue holds one message, the schedule's state (the last
 * tick fired of each function, `scheduler_state.ts`). A replica learns it
 * is the active one when that message reaches it, and it stays active as
 * long as its connection lives: RabbitMQ moves the queue's consumer to the
 * next replica only when it goes, with the message it held unacknowledged.
 * No consensus of our own, no server besides the broker.
 *
 * The active replica holds the state message while it fires: each due tick
 * goes out (confirmed) as a request to the function's queue through the
 * schedule exchange, then the new state (confirmed), then the old one is
 * acknowledged. It republishes the state at least every `renewMs` (under
 * RabbitMQ's 30 minute consumer timeout), so a state lost to an operator's
 * purge comes back. A replica that dies between a tick and its state
 * leaves the next one to fire that tick again: with the same id and bytes,
 * which the workers' record of answers runs once per worker process
 * (docs/schedules.md says what holds across worker replicas).
 *
 * @module
 */

import type { Broker, Consumer, Delivery } from "../core/broker/mod.ts";
import {
  encodeRequest,
  encodeSchedulerNote,
  EVENTS_EXCHANGE,
  type Message,
  SCHEDULE_EXCHANGE,
  SCHEDULE_TICK_HEADER,
  SCHEDULER_NOTE_EVERY_MS,
  SCHEDULER_QUEUE,
  SCHEDULER_QUEUE_DELIVERY_LIMIT,
  tickIdOf,
  tickTimeOf,
} from "../core/contract/mod.ts";
import type { Logger } from "../core/log.ts";
import { type Schedule, TickClock } from "../core/schedule.ts";
import { decodeState, encodeState, mergeState, type TickState } from "./scheduler_state.ts";

/** A function the registry schedules. */
export interface ScheduledFunction {
  name: string;
  queue: string;
  schedule: Schedule;
}

/** The time a session reads and waits on; tests drive their own. */
export interface SchedulerClock {
  now(): number;
  /** Resolves after `ms`, or at once when `signal` aborts. */
  sleep(ms: number, signal: AbortSignal): Promise<void>;
}

/** The wall clock and real timers. */
export const REAL_CLOCK: SchedulerClock = {
  now: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise((resolve) => {
      if (signal.aborted) return resolve();
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener("abort", done, { once: true });
    }),
};

/** Most ticks of one function fired before the state is saved, in a long catch-up. */
const TICKS_PER_BATCH = 1000;

/** Options for {@linkcode startSchedulerSession}. */
export interface SchedulerSessionOptions {
  functions: readonly ScheduledFunction[];
  /** This replica's name, in its logs and in the state it writes. */
  id: string;
  log: Logger;
  /**
   * The queue the replicas share: another name makes another group of
   * replicas, independent of the first (tests use one each).
   * @default {SCHEDULER_QUEUE}
   */
  queue?: string;
  /** The scheduler queue's type. @default {"quorum"} */
  queueType?: "quorum" | "classic";
  /** Longest time the active replica holds one state message. @default {30_000} */
  renewMs?: number;
  /**
   * How long a replica that just became active waits for any other copy of
   * the state (left by one that died mid-handover) before it fires.
   * @default {200}
   */
  settleMs?: number;
  /** How soon ticks that could not go out (their queue missing) are tried again. @default {1000} */
  retryMs?: number;
  /** @default {REAL_CLOCK} */
  clock?: SchedulerClock;
  /** Told when this replica becomes the active one. */
  onActive?: () => void;
  /** Told of each tick sent, after the broker confirmed it. */
  onTick?: (fired: { function: string; tick: number; taskId: string }) => void;
}

/** A running session. */
export interface SchedulerSession {
  /** Whether this replica fires: the broker gave it the state. */
  readonly active: boolean;
  /** Settles when the session ends: on {@linkcode stop}, or with the error that ended it. */
  readonly ended: Promise<void>;
  /** Stops firing once a tick in flight and its state are out; the caller closes the broker. */
  stop(): Promise<void>;
}

/** The request of `fn`'s tick at `tick`: no reply, the same bytes in every replica. */
export function tickMessage(fn: ScheduledFunction, tick: number): Message {
  return encodeRequest(fn.name, fn.schedule.payload, {
    taskId: tickIdOf(fn.name, tick),
    headers: { [SCHEDULE_TICK_HEADER]: tickTimeOf(tick) },
    now: tick,
  });
}

/**
 * Declares the scheduler's exchange and queue on `broker`, consumes the
 * queue, and fires the ticks while this replica is the active one. Rejects
 * when the queue cannot be set up.
 */
export async function startSchedulerSession(
  broker: Broker,
  options: SchedulerSessionOptions,
): Promise<SchedulerSession> {
  const { log, id } = options;
  const clock = options.clock ?? REAL_CLOCK;
  const renewMs = options.renewMs ?? 30_000;
  const settleMs = options.settleMs ?? 200;
  const retryMs = options.retryMs ?? 1000;
  const queueType = options.queueType ?? "quorum";
  const stateQueue = options.queue ?? SCHEDULER_QUEUE;
  const functions = options.functions.map((fn) => ({ ...fn, clock: new TickClock(fn.schedule) }));
  const stopping = new AbortController();
  const ticks: TickState = new Map();
  /** State messages received and not yet replaced by one published since. */
  let held: Delivery[] = [];
  let active = false;
  let lastPersist = -Infinity;
  let activeSince = 0;
  let lastNote = -Infinity;
  let persisting: Promise<void> | undefined;
  let persistAgain = false;
  /** Functions whose queue could not take their ticks, and when to try again. */
  const blocked = new Map<string, number>();
  let resolveEnded!: () => void;
  let rejectEnded!: (error: unknown) => void;
  const ended = new Promise<void>((resolve, reject) => {
    resolveEnded = resolve;
    rejectEnded = reject;
  });
  // Whoever holds the session awaits it; a rejection nobody awaited yet
  // must not end the process first.
  ended.catch(() => {});
  let loop: Promise<void> | undefined;

  await broker.declareExchange(SCHEDULE_EXCHANGE, "direct", { durable: true });
  await broker.declareExchange(EVENTS_EXCHANGE, "fanout", { durable: true });
  const info = await broker.declareQueue(stateQueue, {
    durable: true,
    type: queueType,
    singleActiveConsumer: true,
    ...(queueType === "quorum" && { deliveryLimit: SCHEDULER_QUEUE_DELIVERY_LIMIT }),
  });
  await broker.bindQueue(stateQueue, SCHEDULE_EXCHANGE, stateQueue);

  /** Publishes the state as this replica knows it, then lets go of the copies it replaces. */
  function persist(): Promise<void> {
    if (persisting) {
      persistAgain = true;
      return persisting;
    }
    persisting = (async () => {
      do {
        persistAgain = false;
        const replaced = held;
        held = [];
        const now = clock.now();
        await broker.publishToExchange(
          SCHEDULE_EXCHANGE,
          encodeState(ticks, id, now),
          stateQueue,
        );
        for (const delivery of replaced) broker.ack(delivery);
        lastPersist = now;
        if (active && now - lastNote >= SCHEDULER_NOTE_EVERY_MS) note(now);
      } while (persistAgain);
    })().finally(() => persisting = undefined);
    return persisting;
  }

  /** Tells dashboards which replica fires; lost notes only delay what they show. */
  function note(now: number): void {
    lastNote = now;
    broker.publishToExchange(
      EVENTS_EXCHANGE,
      encodeSchedulerNote({
        scheduler: id,
        since: new Date(activeSince).toISOString(),
        functions: functions.map((fn) => fn.name),
      }),
    ).catch((error) => log.debug("Could not publish the scheduler's note", { error }));
  }

  function receive(delivery: Delivery): void {
    if (stopping.signal.aborted) return; // Left unsettled: the next replica gets it.
    const read = decodeState(delivery, { user: broker.user, now: clock.now() });
    if (!read.ok) {
      log.warn("Dropped a message of the scheduler queue that is no state of the scheduler's", {
        reason: read.reason,
        sender: delivery.properties.userId,
      });
      broker.ack(delivery);
    } else {
      mergeState(ticks, read.ticks);
      held.push(delivery);
    }
    if (!active) {
      // Only the queue's single active consumer is fed: this is the one.
      active = true;
      activeSince = clock.now();
      log.info("Active: this replica fires the schedule's ticks", {
        functions: functions.length,
        state_from: read.ok ? read.by ?? undefined : undefined,
      });
      options.onActive?.();
      loop = run().then(resolveEnded, rejectEnded);
    } else if (held.length > 1) {
      // Copies left by a replica that died mid-handover: merged, one goes on.
      persist().catch(rejectEnded);
    }
  }

  /**
   * Sends one tick; false when it could not go out (its function's queue
   * does not exist yet, or refused it, or the connection went: then the
   * session ends anyway), and it is tried again after `retryMs`.
   */
  async function fire(fn: typeof functions[number], tick: number): Promise<boolean> {
    try {
      // Bound before each tick: a queue deleted and declared again by its
      // worker lost its binding, and a tick with none would vanish unrouted.
      await broker.bindQueue(fn.queue, SCHEDULE_EXCHANGE, fn.queue);
      const message = tickMessage(fn, tick);
      await broker.publishToExchange(SCHEDULE_EXCHANGE, message, fn.queue);
      const taskId = message.properties.messageId!;
      if (blocked.delete(fn.name)) {
        log.info("The function's queue takes its ticks again", { function: fn.name });
      }
      log.info("Fired a tick", {
        function: fn.name,
        queue: fn.queue,
        tick: tickTimeOf(tick),
        task_id: taskId,
        late_ms: clock.now() - tick,
      });
      options.onTick?.({ function: fn.name, tick, taskId });
      return true;
    } catch (error) {
      if (!blocked.has(fn.name)) {
        log.warn(
          "Cannot fire a tick now; it waits, and fires late within the schedule's catch-up window",
          {
            function: fn.name,
            queue: fn.queue,
            tick: tickTimeOf(tick),
            error: (error as Error).message,
            retry_in_ms: retryMs,
          },
        );
      }
      blocked.set(fn.name, clock.now() + retryMs);
      return false;
    }
  }

  /** Fires every due tick; true when more are due at once (a catch-up of more than a batch). */
  async function fireDue(): Promise<boolean> {
    const now = clock.now();
    let changed = false;
    let more = false;
    for (const fn of functions) {
      if (stopping.signal.aborted) break;
      const retryAt = blocked.get(fn.name);
      if (retryAt !== undefined && retryAt > now) continue;
      const last = ticks.get(fn.name);
      if (last === undefined) {
        // A schedule never fired before starts now: nothing of it was missed.
        ticks.set(fn.name, now);
        changed = true;
        continue;
      }
      const due = fn.clock.due(last, now, TICKS_PER_BATCH);
      if (due.skipped) {
        log.warn("Skipped ticks missed while no scheduler ran, older than the catch-up window", {
          function: fn.name,
          from: tickTimeOf(due.skipped.from),
          before: tickTimeOf(due.skipped.until),
          catch_up_ms: fn.schedule.catchUpMs,
        });
        if (due.fire.length === 0) {
          ticks.set(fn.name, now);
          changed = true;
        }
      }
      let sent = 0;
      for (const tick of due.fire) {
        if (!await fire(fn, tick)) break;
        ticks.set(fn.name, tick);
        changed = true;
        sent++;
      }
      more ||= sent === TICKS_PER_BATCH;
    }
    if (changed || held.length > 1 || clock.now() - lastPersist >= renewMs) await persist();
    return more;
  }

  /** When to look again: the next tick of any function, a blocked one's retry, the renewal. */
  function nextWake(): number {
    let wake = lastPersist + renewMs;
    for (const fn of functions) {
      const retryAt = blocked.get(fn.name);
      const next = retryAt ?? fn.clock.next(ticks.get(fn.name) ?? clock.now());
      if (next !== null) wake = Math.min(wake, next);
    }
    return wake;
  }

  async function run(): Promise<void> {
    await clock.sleep(settleMs, stopping.signal);
    while (!stopping.signal.aborted) {
      if (await fireDue()) continue;
      const wait = nextWake() - clock.now();
      if (wait > 0) await clock.sleep(Math.min(wait, renewMs), stopping.signal);
    }
  }

  let consumer: Consumer;
  try {
    // A state to start from when there is none and no replica holds one:
    // the first replica ever, or after the queue was deleted. Copies made by
    // replicas that start together are merged by the one that gets them.
    if (info.messages === 0 && info.consumers === 0) await persist();
    consumer = await broker.consume(stateQueue, receive, { prefetch: 16 });
  } catch (error) {
    stopping.abort();
    throw error;
  }
  log.info("Waiting for the broker to make this replica the active one", {
    queue: stateQueue,
    functions: functions.map((fn) => fn.name).join(",") || undefined,
  });

  return {
    get active() {
      return active;
    },
    ended,
    async stop() {
      stopping.abort();
      // The tick in flight and its state go out first: cancelling before
      // would hand the queue to the next replica while this one still fires.
      await loop;
      await persisting?.catch(() => {});
      await consumer.cancel().catch(() => {});
      resolveEnded();
    },
  };
}
