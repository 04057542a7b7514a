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
  type DeadLetter,
  decodeJson,
  DEFAULT_MAX_MESSAGE_BYTES,
  isPlainObject,
  parseDeadLetter,
  queueOfDeadLetterQueue,
  replayHeaders,
} from "../core/contract/mod.ts";
import { judgeLetter, type LetterPolicy } from "./dead_letter_trust.ts";
import { startReplayTrace } from "./replay_trace.ts";

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
      const letter = parseDeadLetter(delivery, delivery.queue);
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
      const letter = parseDeadLetter(delivery, delivery.queue);
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
      const headers = replayHeaders(delivery.properties.headers, {
        from: deadLetterQueue,
        sender: verdict.sender,
      });
      const traced = startReplayTrace(headers, letter);
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
