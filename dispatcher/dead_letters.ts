/**
 * Reading and replaying a function's dead letters: the requests its worker
 * refused or gave up on, and those the broker dropped (expired, or over the
 * delivery limit), kept in `<queue>.dlq` with why (see
 * docs/wire-contract.md, "Dead letters", and docs/reliability.md). Listing
 * leaves the queue as it was; replaying sends each letter
 * that proves its origin (`dead_letter_trust.ts`) back to the queue its
 * dead-letter queue belongs to, confirmed, before removing it.
 *
 * @module
 */

import type { Broker, Delivery } from "../core/broker/mod.ts";
import {
  ATTEMPT_HEADER,
  boundText,
  DEAD_LETTER_HEADERS,
  decodeJson,
  DEFAULT_MAX_MESSAGE_BYTES,
  DELIVERY_COUNT_HEADER,
  isPlainObject,
  MAX_ERROR_MESSAGE_CHARS,
  MAX_ERROR_TYPE_CHARS,
  PRIOR_DELIVERIES_HEADER,
  queueOfDeadLetterQueue,
  REPLAYED_SENDER_HEADER,
  SENDER_HEADER,
  SENT_AT_HEADER,
} from "../core/contract/mod.ts";
import { judgeLetter, type LetterPolicy } from "./dead_letter_trust.ts";
import { startReplayTrace } from "./replay_trace.ts";

/** A dead letter, as its headers describe it. */
export interface DeadLetter {
  /**
   * Why it is one: the worker's `x-dlq-reason` (`rejected`,
   * `unauthenticated`, `exhausted`, `non_retryable`, `expired`,
   * `delivery_limit`), else the broker's own (`x-first-death-reason`, or
   * the first `x-death` entry's: `expired`, `delivery_limit`, `rejected`).
   */
  reason: string;
  errorType: string;
  errorMessage: string;
  attempts: number | null;
  /** How often the broker delivered it without it being settled, where known. */
  deliveries: number | null;
  /** The function queue its dead-letter queue belongs to. */
  queue: string;
  worker: string | null;
  /** When it was dead-lettered (ISO 8601). */
  at: string | null;
  taskId: string | null;
  /** The broker user who published it (`user_id`, verified by RabbitMQ). */
  userId: string | null;
  /** The sender of the original request, as its worker recorded it (`x-dlq-sender`). */
  sender: string | null;
  /** The original body as text (lossy for bytes that are not UTF-8). */
  body: string;
}

/**
 * Longest text taken from a letter's headers and properties, by field.
 * Anyone who may publish through the default exchange can forge a letter
 * with some 120 KB of headers (one frame): bounded here, nothing a tool or
 * the dashboard shows of a letter grows with them.
 */
export const LETTER_TEXT_LIMITS = {
  reason: 32,
  errorType: MAX_ERROR_TYPE_CHARS,
  errorMessage: MAX_ERROR_MESSAGE_CHARS,
  worker: 128,
  sender: 128,
  at: 40,
  /** AMQP short strings (message id, user id) hold at most 255 bytes. */
  id: 255,
} as const;

function text(value: unknown, max: number): string | null {
  if (value === undefined || value === null) return null;
  // A header may be a number, bytes (decoded by String) or a table.
  return boundText(typeof value === "string" ? value : String(value), max);
}

function count(value: unknown): number | null {
  const number = Number(value);
  return value !== undefined && value !== null && Number.isInteger(number) ? number : null;
}

/** The reason the broker wrote when it dead-lettered a message itself. */
function brokerReason(headers: Record<string, unknown>): string | null {
  const max = LETTER_TEXT_LIMITS.reason;
  const first = text(headers["x-first-death-reason"], max);
  if (first) return first;
  const deaths = headers["x-death"];
  if (Array.isArray(deaths) && deaths.length > 0) {
    return text((deaths[0] as Record<string, unknown> | null)?.reason, max);
  }
  return null;
}

/** Describes a delivery from a dead-letter queue. */
export function describeDeadLetter(delivery: Delivery): DeadLetter {
  const headers = delivery.properties.headers ?? {};
  const limits = LETTER_TEXT_LIMITS;
  const reason = text(headers[DEAD_LETTER_HEADERS.reason], limits.reason) ??
    brokerReason(headers) ?? "unknown";
  const { messageId, correlationId, userId } = delivery.properties;
  return {
    reason,
    errorType: text(headers[DEAD_LETTER_HEADERS.errorType], limits.errorType) ??
      (headers["x-death"] !== undefined ? "Broker" : "unknown"),
    errorMessage: text(headers[DEAD_LETTER_HEADERS.errorMessage], limits.errorMessage) ?? "",
    attempts: count(headers[DEAD_LETTER_HEADERS.attempts]),
    deliveries: count(headers[DEAD_LETTER_HEADERS.deliveries]) ??
      count(headers[DELIVERY_COUNT_HEADER]),
    queue: queueOfDeadLetterQueue(delivery.queue) ?? delivery.queue.replace(/\.dlq$/, ""),
    worker: text(headers[DEAD_LETTER_HEADERS.worker], limits.worker),
    at: text(headers[DEAD_LETTER_HEADERS.at], limits.at),
    taskId: text(messageId ?? correlationId, limits.id),
    userId: text(userId, limits.id),
    sender: text(headers[DEAD_LETTER_HEADERS.sender], limits.sender),
    body: new TextDecoder().decode(delivery.body),
  };
}

// Letters are held unacknowledged while a queue is read; past this many the
// read stops, so that a huge queue cannot exhaust memory.
const MAX_HELD = 10_000;

/** Options for {@linkcode listDeadLetters}. */
export interface DeadLetterOptions {
  /** At most this many letters. */
  limit: number;
  /** Only letters with this reason. */
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
    // In delivery order: RabbitMQ puts a classic queue's letter back where it
    // was whatever the order, and serves a quorum queue's returns in the
    // order they came back (seen on 3.10).
    for (const delivery of held) broker.nack(delivery, true);
  }
  return letters;
}

/** Options for {@linkcode replayDeadLetters}. */
export interface ReplayOptions extends DeadLetterOptions {
  /** Who may have written the queue's letters and sent its requests. */
  policy: LetterPolicy;
}

/** A letter left in the dead-letter queue as it does not prove its origin. */
export interface RefusedLetter {
  letter: DeadLetter;
  /** Why it was refused. */
  why: string;
}

/** What a replay did. */
export interface ReplayResult {
  replayed: DeadLetter[];
  /** Letters read but left in place, as they did not match `reason`. */
  skipped: number;
  /** Letters left in place, as they do not prove their origin. */
  refused: RefusedLetter[];
}

// Headers a replay drops: the worker's and the broker's records of the
// death, the attempt count (attempts start again at 1), and a retry's
// sender, which only the worker's own user may claim.
const DROPPED_HEADER = /^x-(dlq-|death$|first-death-|last-death-)/;
const DROPPED_HEADERS = new Set([
  ATTEMPT_HEADER,
  SENDER_HEADER,
  DELIVERY_COUNT_HEADER,
  PRIOR_DELIVERIES_HEADER,
]);

/**
 * A replayed request is a new one: a deadline that has passed (the reason an
 * `expired` letter is one) would only dead-letter it again at once, so it
 * is dropped, from a native body and from a Celery request's `expires`.
 * Bodies that are not a JSON object with a past deadline stay as they are.
 */
function withoutPastDeadline(body: Uint8Array, headers: Record<string, unknown>): Uint8Array {
  const expires = headers.expires;
  if (typeof expires === "string" && Date.parse(expires) <= Date.now()) delete headers.expires;
  const json = decodeJson(body, { what: "the letter", maxBytes: DEFAULT_MAX_MESSAGE_BYTES });
  if (!json.ok || !isPlainObject(json.value)) return body;
  const { deadline, ...rest } = json.value;
  if (typeof deadline !== "number" || deadline > Date.now()) return body;
  return new TextEncoder().encode(JSON.stringify(rest));
}

/**
 * Sends up to `limit` letters back, as new requests, to the queue that
 * `deadLetterQueue` belongs to (whatever their headers say), and removes
 * each from the dead-letter queue only once the broker confirmed its copy.
 * Letters that do not prove their origin stay, and are reported.
 */
export async function replayDeadLetters(
  broker: Broker,
  deadLetterQueue: string,
  options: ReplayOptions,
): Promise<ReplayResult> {
  const queue = queueOfDeadLetterQueue(deadLetterQueue);
  if (queue === undefined) {
    throw new TypeError(`Cannot replay '${deadLetterQueue}' as it is not a dead-letter queue`);
  }
  const kept: Delivery[] = [];
  const replayed: DeadLetter[] = [];
  const refused: RefusedLetter[] = [];
  let skipped = 0;
  // A replayed request that fails again comes back to this queue while the
  // replay runs: reading only the letters present at the start keeps it
  // from being replayed over and over.
  let unread = (await broker.inspectQueue(deadLetterQueue))?.messages ?? 0;
  try {
    while (unread-- > 0 && replayed.length < options.limit && kept.length < MAX_HELD) {
      const delivery = await broker.get(deadLetterQueue);
      if (!delivery) break;
      const letter = describeDeadLetter(delivery);
      if (options.reason !== undefined && letter.reason !== options.reason) {
        kept.push(delivery);
        skipped++;
        continue;
      }
      const verdict = judgeLetter(delivery, options.policy);
      if (!verdict.ok) {
        kept.push(delivery);
        refused.push({ letter, why: verdict.why });
        continue;
      }
      const headers = Object.fromEntries(
        Object.entries(delivery.properties.headers ?? {}).filter(([key]) =>
          !DROPPED_HEADER.test(key) && !DROPPED_HEADERS.has(key)
        ),
      );
      const traced = startReplayTrace(headers, letter);
      // Its wait in the queue (a worker's span) starts now, as a retry's does.
      if (headers[SENT_AT_HEADER] !== undefined) headers[SENT_AT_HEADER] = Date.now();
      headers["x-replayed-from"] = deadLetterQueue;
      headers["x-replayed-at"] = new Date().toISOString();
      // The worker runs the copy only if it accepts this sender itself.
      headers[REPLAYED_SENDER_HEADER] = verdict.sender;
      // The broker stamps the replaying user's own user_id.
      const { userId: _, expiration: __, ...properties } = delivery.properties;
      try {
        await broker.publish(queue, {
          body: withoutPastDeadline(delivery.body, headers),
          properties: { ...properties, persistent: true, headers },
        });
      } catch (error) {
        traced?.end(error as Error);
        throw error;
      }
      traced?.end();
      broker.ack(delivery);
      replayed.push(letter);
    }
  } finally {
    for (const delivery of kept) broker.nack(delivery, true);
  }
  return { replayed, skipped, refused };
}
