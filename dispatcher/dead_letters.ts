/**
 * Reading and replaying a function's dead letters: the requests its worker
 * refused or gave up on, kept in `<queue>.dlq` with why (see README, "Dead
 * letters"). Listing leaves the queue as it was; replaying sends each letter
 * back to its function's queue, confirmed, before removing it.
 *
 * @module
 */

import type { Broker, Delivery } from "../functions/_runtime/broker/broker.ts";
import { ATTEMPT_HEADER } from "../functions/_runtime/contract/mod.ts";

/** A dead letter, as the worker described it in its headers. */
export interface DeadLetter {
  /** `rejected`, `exhausted` or `non_retryable`. */
  reason: string;
  errorType: string;
  errorMessage: string;
  attempts: number | null;
  /** The function queue it came from. */
  queue: string;
  worker: string | null;
  /** When it was dead-lettered (ISO 8601). */
  at: string | null;
  taskId: string | null;
  /** The original body as text (lossy for bytes that are not UTF-8). */
  body: string;
}

/** The function queue a dead-letter queue belongs to: `queue_a.dlq` → `queue_a`. */
export function functionQueueOf(deadLetterQueue: string): string {
  return deadLetterQueue.replace(/\.dlq$/, "");
}

function text(value: unknown): string | null {
  if (value === undefined || value === null) return null;
  return typeof value === "string" ? value : String(value);
}

/** Describes a delivery from a dead-letter queue. */
export function describeDeadLetter(delivery: Delivery): DeadLetter {
  const headers = delivery.properties.headers ?? {};
  const attempts = Number(headers["x-dlq-attempts"]);
  return {
    reason: text(headers["x-dlq-reason"]) ?? "unknown",
    errorType: text(headers["x-dlq-error-type"]) ?? "unknown",
    errorMessage: text(headers["x-dlq-error-message"]) ?? "",
    attempts: Number.isInteger(attempts) ? attempts : null,
    queue: text(headers["x-dlq-queue"]) ?? functionQueueOf(delivery.queue),
    worker: text(headers["x-dlq-worker"]),
    at: text(headers["x-dlq-at"]),
    taskId: delivery.properties.messageId ?? delivery.properties.correlationId ?? null,
    body: new TextDecoder().decode(delivery.body),
  };
}

// Letters are held unacknowledged while a queue is read; past this many the
// read stops, so that a huge queue cannot exhaust memory.
const MAX_HELD = 10_000;

/** Options for {@linkcode listDeadLetters} and {@linkcode replayDeadLetters}. */
export interface DeadLetterOptions {
  /** At most this many letters. */
  limit: number;
  /** Only letters with this `x-dlq-reason`. */
  reason?: string;
}

/**
 * Reads up to `limit` letters without removing any: each is held until the
 * end, then all return to the queue in their order.
 */
export async function listDeadLetters(
  broker: Broker,
  deadLetterQueue: string,
  options: DeadLetterOptions,
): Promise<DeadLetter[]> {
  const held: Delivery[] = [];
  const letters: DeadLetter[] = [];
  try {
    while (letters.length < options.limit && held.length < MAX_HELD) {
      const delivery = await broker.get(deadLetterQueue);
      if (!delivery) break;
      held.push(delivery);
      const letter = describeDeadLetter(delivery);
      if (options.reason === undefined || letter.reason === options.reason) letters.push(letter);
    }
  } finally {
    for (const delivery of held.reverse()) broker.nack(delivery, true);
  }
  return letters;
}

/** What a replay did. */
export interface ReplayResult {
  replayed: DeadLetter[];
  /** Letters read but left in place, as they did not match `reason`. */
  skipped: number;
}

const DLQ_HEADER = /^x-dlq-/;

/**
 * Sends up to `limit` letters back to their function's queue as new
 * requests (attempts start again at 1) and removes each from the
 * dead-letter queue only once the broker confirmed its copy.
 */
export async function replayDeadLetters(
  broker: Broker,
  deadLetterQueue: string,
  options: DeadLetterOptions,
): Promise<ReplayResult> {
  const skippedDeliveries: Delivery[] = [];
  const replayed: DeadLetter[] = [];
  // A replayed request that fails again comes back to this queue while the
  // replay runs: reading only the letters present at the start keeps it
  // from being replayed over and over.
  let unread = (await broker.inspectQueue(deadLetterQueue))?.messages ?? 0;
  try {
    while (
      unread-- > 0 && replayed.length < options.limit && skippedDeliveries.length < MAX_HELD
    ) {
      const delivery = await broker.get(deadLetterQueue);
      if (!delivery) break;
      const letter = describeDeadLetter(delivery);
      if (options.reason !== undefined && letter.reason !== options.reason) {
        skippedDeliveries.push(delivery);
        continue;
      }
      const headers = Object.fromEntries(
        Object.entries(delivery.properties.headers ?? {}).filter(([key]) =>
          !DLQ_HEADER.test(key) && key !== ATTEMPT_HEADER
        ),
      );
      headers["x-replayed-from"] = deadLetterQueue;
      headers["x-replayed-at"] = new Date().toISOString();
      await broker.publish(letter.queue, {
        body: delivery.body,
        properties: { ...delivery.properties, persistent: true, headers },
      });
      broker.ack(delivery);
      replayed.push(letter);
    }
  } finally {
    for (const delivery of skippedDeliveries.reverse()) broker.nack(delivery, true);
  }
  return { replayed, skipped: skippedDeliveries.length };
}
