/**
 * How a worker publishes the outcome of a delivery: the reply, the retry,
 * the dead letter, and the copy of a delivery it hands back unfinished.
 * Everything it writes is bounded: the request's own headers are kept only
 * when they fit the contract's budget, and every value the runtime adds is
 * cut to a small size, so what it publishes always fits in one AMQP frame
 * and never fails for a request's sake.
 *
 * @module
 */

import type { Broker, Delivery, QueueOptions } from "../../core/broker/broker.ts";
import {
  ACQUIRED_COUNT_HEADER,
  ATTEMPT_HEADER,
  boundText,
  DEAD_LETTER_HEADERS,
  deadLetterQueueOf,
  type DeadLetterRecord,
  DELIVERY_COUNT_HEADER,
  encodeDeadLetter,
  encodeProgress,
  encodeReply,
  headerBytes,
  isDeadLetterHeader,
  MAX_HEADER_BYTES,
  type Message,
  type MessageProperties,
  PRIOR_DELIVERIES_HEADER,
  retryQueueOf,
  SENDER_HEADER,
  SENT_AT_HEADER,
  type TaskProgress,
  type TaskReply,
} from "../../core/contract/mod.ts";

/** Longest user name the runtime copies into a header. */
const MAX_NAME_CHARS = 128;

/**
 * The request's headers when they fit the budget, else none (and a note
 * saying so), without the headers only the runtime may write: `x-dlq-*`,
 * its record of a dead letter (a replay trusts them on a letter its worker
 * published), and `x-sender` and `x-prior-deliveries`, which it writes anew
 * on what it republishes, so that a request never brings its own; nor the
 * broker's counts of this delivery, which a copy must not inherit (RabbitMQ
 * writes them only once it counts one, and would leave a stale one be).
 */
function keptHeaders(properties: MessageProperties): Record<string, unknown> {
  const { headers } = properties;
  if (headers === undefined) return {};
  if (headerBytes(headers, MAX_HEADER_BYTES) > MAX_HEADER_BYTES) {
    return { [DEAD_LETTER_HEADERS.headersDropped]: true };
  }
  const kept: Record<string, unknown> = {};
  for (const key in headers) {
    if (isDeadLetterHeader(key) || RUNTIME_HEADERS.has(key)) continue;
    kept[key] = headers[key];
  }
  return kept;
}

/** Headers of a delivery that only the runtime or the broker write; see {@linkcode keptHeaders}. */
const RUNTIME_HEADERS = new Set([
  SENDER_HEADER,
  PRIOR_DELIVERIES_HEADER,
  DELIVERY_COUNT_HEADER,
  ACQUIRED_COUNT_HEADER,
]);

/** `headers` with the original sender, when known: a republished request's `user_id` is the worker's. */
function withSender(headers: Record<string, unknown>, sender: string | undefined) {
  if (sender !== undefined) headers[SENDER_HEADER] = boundText(sender, MAX_NAME_CHARS);
  return headers;
}

/**
 * The options of a function's retry queue of `delayMs`. It never expires:
 * the worker declares every delay of the ladder when it starts, and a queue
 * that vanished would have to be declared again when the broker may refuse
 * new queues.
 */
export function retryQueueOptions(
  queue: string,
  delayMs: number,
  type: "classic" | "quorum",
): QueueOptions {
  return { durable: true, type, messageTtlMs: delayMs, deadLetterQueue: queue };
}

/** A copy of the request's properties to republish, without what must not travel on. */
function republished(properties: MessageProperties): MessageProperties {
  // The broker stamps user_id; expiration would make a dead letter vanish.
  const { userId: _user, expiration: _expiration, ...rest } = properties;
  return { ...rest, persistent: true };
}

/** Options for {@linkcode createSettler}. */
export interface SettlerOptions {
  queue: string;
  workerId: string;
  queueType: "classic" | "quorum";
  /**
   * The broker users the worker accepts requests from (`*` for anyone),
   * written into each dead letter for a replay to check its sender against.
   */
  allowedSenders: Iterable<string>;
}

/** What a worker publishes; see the module documentation. */
export interface Settler {
  /** Sends `reply` to the request's `reply_to`, if it has one. */
  reply(delivery: Delivery, reply: TaskReply, resultJson?: string): Promise<void>;
  /** Sends `message` to the request's `reply_to`, if it has one: a reply in another protocol. */
  answer(delivery: Delivery, message: Message): Promise<void>;
  /** Sends a progress event; failures are the caller's to ignore. */
  progress(delivery: Delivery, progress: TaskProgress): Promise<void>;
  /** Publishes the request to `<queue>.dlq` with the reason and error in headers. */
  deadLetter(delivery: Delivery, letter: DeadLetter): Promise<void>;
  /** Publishes the request to the retry queue of `delayMs`, as attempt `nextAttempt`. */
  retry(delivery: Delivery, retry: Retry): Promise<void>;
  /**
   * Publishes a copy of a delivery the worker hands back unfinished to its
   * own queue, keeping the failed deliveries it had (`x-prior-deliveries`);
   * the caller acknowledges the delivery once this resolves. A return this
   * way counts toward no delivery limit, on any RabbitMQ version.
   */
  handBack(delivery: Delivery, handBack: HandBack): Promise<void>;
}

/** A delivery handed back unfinished. */
export interface HandBack {
  /** The broker user who sent the original request, when known. */
  sender?: string;
  /** Failed deliveries it had so far, which its copy carries on. */
  priorDeliveries: number;
}

/** What a dead letter says about why it is one; the settler adds where and by whom. */
export type DeadLetter = Omit<DeadLetterRecord, "queue" | "worker" | "allowedSenders" | "at">;

/** When and as which attempt a request runs again. */
export interface Retry {
  nextAttempt: number;
  delayMs: number;
  /** The broker user who sent the original request. */
  sender?: string;
  /** Ms until the caller's deadline, if it gave one: the retry expires with it. */
  remainingMs?: number;
}

/** Makes the {@linkcode Settler} of a worker on `broker`. */
export function createSettler(broker: Broker, options: SettlerOptions): Settler {
  const { queue, queueType } = options;
  const { workerId } = options;
  const allowedSenders = [...options.allowedSenders];
  const dlq = deadLetterQueueOf(queue);
  return {
    async reply(delivery, reply, resultJson) {
      const { replyTo, correlationId } = delivery.properties;
      if (!replyTo) return;
      await broker.publish(replyTo, encodeReply(reply, correlationId, { resultJson }));
    },
    async answer(delivery, message) {
      const { replyTo } = delivery.properties;
      if (!replyTo) return;
      await broker.publish(replyTo, message);
    },
    async progress(delivery, progress) {
      const { replyTo, correlationId } = delivery.properties;
      if (!replyTo) return;
      await broker.publish(replyTo, encodeProgress(progress, correlationId));
    },
    async deadLetter(delivery, letter) {
      const request = {
        body: delivery.body,
        properties: {
          ...republished(delivery.properties),
          headers: keptHeaders(delivery.properties),
        },
      };
      await broker.publish(
        dlq,
        encodeDeadLetter(request, { ...letter, queue, worker: workerId, allowedSenders }),
      );
    },
    async retry(delivery, retry) {
      const retryQueue = retryQueueOf(queue, retry.delayMs);
      // Declared at start; declared again (which a full broker still allows
      // for a queue that exists) so that a retry queue someone deleted comes
      // back rather than the retry being dropped unrouted.
      await broker.declareQueue(retryQueue, retryQueueOptions(queue, retry.delayMs, queueType));
      const headers = withSender({
        ...keptHeaders(delivery.properties),
        [ATTEMPT_HEADER]: retry.nextAttempt,
        // The next attempt's wait in the queue starts now.
        [SENT_AT_HEADER]: Date.now(),
      }, retry.sender);
      const properties = { ...republished(delivery.properties), headers };
      if (retry.remainingMs !== undefined) {
        properties.expiration = String(Math.max(1, Math.ceil(retry.remainingMs)));
      }
      await broker.publish(retryQueue, { body: delivery.body, properties });
    },
    async handBack(delivery, handBack) {
      const headers = withSender(keptHeaders(delivery.properties), handBack.sender);
      if (handBack.priorDeliveries > 0) headers[PRIOR_DELIVERIES_HEADER] = handBack.priorDeliveries;
      // Its expiration stays: a request nobody waits for still leaves unread.
      const { userId: _user, ...rest } = delivery.properties;
      await broker.publish(queue, {
        body: delivery.body,
        properties: { ...rest, persistent: true, headers },
      });
    },
  };
}
