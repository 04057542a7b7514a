/**
 * The worker's side of cancellation (`core/contract/cancel.ts`): it reads
 * the stream of cancellations, from {@linkcode CANCELLATION_RETENTION_MS}
 * back when it starts and then as they are written, keeps each one in a
 * bounded record ({@linkcode CancelledCalls}) until the call's deadline, and
 * stops the attempt of a cancelled call it runs now. The delivery pipeline
 * asks the record before it starts any request (`delivery.ts`), so a
 * request that arrives after its cancellation (queued, retried, delivered
 * to another replica, or to a worker that started after the cancel) never
 * starts.
 *
 * What holds, precisely: every worker whose connection reads the stream
 * sees every cancellation kept there (the last 24 hours, at most 64 MiB)
 * within moments of its publication; each keeps at most
 * {@linkcode DEFAULT_MAX_CANCELLATIONS}, forgetting the oldest first, and
 * each until the deadline it names or the retention, whichever is first.
 * A cancellation counts only for calls whose sender may be cancelled by its
 * publisher (`mayCancel`). A worker whose stream is missing, and that may
 * not declare it, serves its tasks all the same and says so: it then stops
 * nothing. One whose user may not read it stops at start, saying what to
 * grant ({@linkcode CancellationsRefusedError}): RabbitMQ closes the channel
 * of a refused consumer, and with it every other consumer of the worker.
 *
 * @module
 */

import type { Broker, Consumer, Delivery } from "../../core/broker/broker.ts";
import {
  CANCEL_SYNC_MESSAGE_TYPE,
  CANCELLATION_RETENTION_MS,
  CANCELLATIONS_STREAM,
  CANCELLATIONS_STREAM_OPTIONS,
  type CancelStatus,
  CONTENT_TYPE,
  encodeCancelAnswer,
  isReplyDestination,
  mayCancel,
  parseCancel,
} from "../../core/contract/mod.ts";
import type { Logger } from "../../core/log.ts";

/** Most cancellations a worker keeps at once. */
export const DEFAULT_MAX_CANCELLATIONS = 100_000;

/** Most users a worker keeps as cancellers of one call: others may not push the right one out. */
const MAX_CANCELLERS = 8;

/** A cancellation kept: who sent it (each may), and until when it holds. */
interface Kept {
  by: string[];
  until: number;
}

/** Options for {@linkcode CancelledCalls}. */
export interface CancelledCallsOptions {
  /** @default {DEFAULT_MAX_CANCELLATIONS} */
  maxEntries?: number;
  /** The longest a cancellation is kept. @default {CANCELLATION_RETENTION_MS} */
  retentionMs?: number;
  /** @default {Date.now} */
  now?: () => number;
}

/** The cancellations a worker knows of; see the module documentation. */
export class CancelledCalls {
  readonly #kept = new Map<string, Kept>();
  readonly #maxEntries: number;
  readonly #retentionMs: number;
  readonly #now: () => number;

  /** @param options Its bounds. */
  constructor(options: CancelledCallsOptions = {}) {
    this.#maxEntries = options.maxEntries ?? DEFAULT_MAX_CANCELLATIONS;
    this.#retentionMs = options.retentionMs ?? CANCELLATION_RETENTION_MS;
    this.#now = options.now ?? Date.now;
  }

  /** Cancellations kept now. */
  get size(): number {
    return this.#kept.size;
  }

  /**
   * Keeps the cancellation of `taskId` by `by`, until `until` (never past
   * the retention from `at`, when it was published); `again` when `by` had
   * cancelled it already.
   */
  add(taskId: string, by: string, until?: number, at = this.#now()): "new" | "again" {
    const now = this.#now();
    const latest = at + this.#retentionMs;
    const holds = Math.min(until ?? latest, latest);
    const kept = this.#kept.get(taskId);
    if (kept && kept.until > now) {
      if (kept.by.includes(by)) return "again";
      if (kept.by.length < MAX_CANCELLERS) kept.by.push(by);
      kept.until = Math.max(kept.until, holds);
      return "new";
    }
    this.#kept.delete(taskId);
    if (holds <= now) return "new";
    this.#kept.set(taskId, { by: [by], until: holds });
    this.#prune(now);
    return "new";
  }

  /**
   * Who cancelled the call `taskId` sent by `sender`, among those who may;
   * `undefined` when no cancellation of it holds.
   */
  find(taskId: string, sender: string | undefined): string | undefined {
    const kept = this.#kept.get(taskId);
    if (!kept) return undefined;
    if (kept.until <= this.#now()) {
      this.#kept.delete(taskId);
      return undefined;
    }
    return kept.by.find((by) => mayCancel(by, sender));
  }

  /** Forgets the oldest beyond the bound, and those past their time at the head. */
  #prune(now: number): void {
    for (const [taskId, kept] of this.#kept) {
      if (this.#kept.size <= this.#maxEntries && kept.until > now) return;
      this.#kept.delete(taskId);
    }
  }
}

/** What a worker's running tasks say of a cancellation: see {@linkcode CancelStatus}. */
export type CancelRunning = (taskId: string, by: string) => CancelStatus | undefined;

/** Options for {@linkcode serveCancellations}. */
export interface ServeCancellationsOptions {
  record: CancelledCalls;
  /** Stops the attempt of a call this worker runs now, if any. */
  cancelRunning: CancelRunning;
  /** How the call `taskId` ended here, if this worker answered it: its sender and status. */
  finished: (taskId: string) => { sender: string; status: string; cancelled: boolean } | undefined;
  /** Who answers, in answers. */
  worker: string;
  function: string;
  log: Logger;
  /** @default {Date.now} */
  now?: () => number;
}

/**
 * The broker refuses the worker's user read on the cancellations stream: a
 * deployment to fix (its permissions), which no retry mends.
 */
export class CancellationsRefusedError extends Error {
  /** @param cause The broker's refusal. */
  constructor(cause: unknown) {
    super(
      `Cannot start the worker as the broker refuses it read on the stream '${CANCELLATIONS_STREAM}': grant its user read on it (ops/rabbitmq/definitions.ts workerPermissions; docs/security.md), then restart it`,
      { cause },
    );
    this.name = "CancellationsRefusedError";
  }
}

/** The reading of the stream: cancel it when the worker stops. */
export interface CancellationsReader extends Consumer {
  /** Whether the stream is being read: false when the broker refused it. */
  readonly reading: boolean;
}

/** How old a cancellation may be and still be answered: older ones are history being read. */
const ANSWER_WITHIN_MS = 10_000;

/** How long a worker waits to have read the stream's history before it takes requests anyway. */
const SYNC_TIMEOUT_MS = 10_000;

/**
 * Reads the stream of cancellations into `options.record`, stopping running
 * attempts as they come; see the module documentation. Resolves once it has
 * read every cancellation written before it started (or after
 * {@linkcode SYNC_TIMEOUT_MS}, saying so). A missing stream the worker may
 * not declare is logged, and the worker goes on; a stream it may not read
 * rejects with a {@linkcode CancellationsRefusedError}.
 */
export async function serveCancellations(
  broker: Broker,
  options: ServeCancellationsOptions,
): Promise<CancellationsReader> {
  const { record, log } = options;
  const now = options.now ?? Date.now;
  const started = now();

  const statusOf = (
    taskId: string,
    by: string,
    state: "new" | "again",
  ): { status: CancelStatus; outcome?: string } | undefined => {
    const running = options.cancelRunning(taskId, by);
    if (running !== undefined) return { status: running };
    const finished = options.finished(taskId);
    // Only who may cancel the call learns how it ended.
    if (finished && mayCancel(by, finished.sender)) {
      return finished.cancelled
        ? { status: "already_cancelled" }
        : { status: "finished", outcome: finished.status };
    }
    return state === "again" ? { status: "already_cancelled" } : undefined;
  };

  const marker = crypto.randomUUID();
  let caughtUp!: () => void;
  const synced = new Promise<void>((resolve) => caughtUp = resolve);

  const onDelivery = (delivery: Delivery) => {
    broker.ack(delivery);
    if (delivery.properties.type === CANCEL_SYNC_MESSAGE_TYPE) {
      if (delivery.properties.correlationId === marker) caughtUp();
      return;
    }
    const parsed = parseCancel(delivery);
    const by = delivery.properties.userId;
    if (!parsed.ok || by === undefined) {
      log.debug("Ignored a message on the cancellations stream", {
        error: parsed.ok ? "it has no user_id" : parsed.error.message,
      });
      return;
    }
    const { task_id: taskId, until } = parsed.value;
    const at = Math.min((delivery.properties.timestamp ?? 0) * 1000 || now(), now());
    const said = statusOf(taskId, by, record.add(taskId, by, until, at));
    if (said === undefined) return;
    const { status, outcome } = said;
    if (status === "stopped" || status === "refused") {
      log.info(status === "stopped" ? "Cancelled a running task" : "Refused a cancellation", {
        task_id: taskId,
        cancelled_by: by,
      });
    }
    const { replyTo, correlationId } = delivery.properties;
    // History read at start is not answered: its canceller has long stopped listening.
    if (!replyTo || at < started - ANSWER_WITHIN_MS) return;
    if (!isReplyDestination(replyTo, "pong", by)) return;
    const answer = encodeCancelAnswer({
      kind: "cancel_answer",
      task_id: taskId,
      status,
      worker: options.worker,
      function: options.function,
      ...(outcome !== undefined && { outcome }),
    }, correlationId);
    broker.publish(replyTo, answer).catch((error) =>
      log.debug("Could not answer a cancellation", { error })
    );
  };

  let consumer: Consumer;
  try {
    if ((await broker.inspectQueue(CANCELLATIONS_STREAM)) === null) {
      await broker.declareQueue(CANCELLATIONS_STREAM, CANCELLATIONS_STREAM_OPTIONS);
    }
  } catch (error) {
    log.warn(
      "Cannot declare the missing cancellations stream: serving tasks, but no cancellation will stop one (declare it as the stack's definitions do)",
      { stream: CANCELLATIONS_STREAM, error },
    );
    return { reading: false, cancel: () => Promise.resolve() };
  }
  try {
    consumer = await broker.consume(CANCELLATIONS_STREAM, onDelivery, {
      prefetch: 256,
      offset: { sinceMs: started - CANCELLATION_RETENTION_MS },
      // Its nodes gone, tasks go on: a task restarted for it would run twice.
      onLost: (reason) =>
        log.warn(
          "Lost the cancellations stream: serving tasks, but no cancellation will stop one here until the worker reconnects",
          { stream: CANCELLATIONS_STREAM, reason },
        ),
    });
  } catch (error) {
    const message = String((error as Error)?.message);
    if (/refused access/.test(message)) throw new CancellationsRefusedError(error);
    // AMQP 0-9-1 reads a stream only on a node that holds a replica of it,
    // and not at all while its replicas' nodes are down: on a cluster whose
    // stream was declared before the other nodes joined, a worker would
    // otherwise never serve. Cancellation waits; the tasks do not.
    const noReplica = /does not have a running replica on the local node/.test(message);
    log.warn(
      noReplica
        ? "Cannot read the cancellations stream on this broker node, which holds no replica of it: serving tasks, but no cancellation will stop one here (add a replica on every node: rabbitmq-streams add_replica tasks.cancellations <node>)"
        : "Cannot read the cancellations stream now: serving tasks, but no cancellation will stop one here until the worker reconnects (check the stream's replicas: rabbitmq-streams stream_status tasks.cancellations)",
      { stream: CANCELLATIONS_STREAM, error },
    );
    return { reading: false, cancel: () => Promise.resolve() };
  }
  try {
    // A stream has no end to wait for: the worker writes a marker, and once
    // it reads it back it has read everything written before it.
    await broker.publish(CANCELLATIONS_STREAM, {
      body: new TextEncoder().encode("{}"),
      properties: {
        contentType: CONTENT_TYPE,
        type: CANCEL_SYNC_MESSAGE_TYPE,
        correlationId: marker,
      },
    });
  } catch (error) {
    // The stream takes no message now (its replicas' nodes are down): as a
    // stream that cannot be read, it waits; the tasks do not.
    await consumer.cancel().catch(() => {});
    log.warn(
      "Cannot write to the cancellations stream now: serving tasks, but no cancellation will stop one here until the worker reconnects",
      { stream: CANCELLATIONS_STREAM, error },
    );
    return { reading: false, cancel: () => Promise.resolve() };
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  const inTime = await Promise.race([
    synced.then(() => true),
    new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(false), SYNC_TIMEOUT_MS)),
  ]);
  clearTimeout(timer);
  if (!inTime) {
    log.warn(
      "Taking requests before reading every cancellation back: a call cancelled moments ago may start",
      { waited_ms: SYNC_TIMEOUT_MS },
    );
  }
  return { reading: true, cancel: () => consumer.cancel() };
}
