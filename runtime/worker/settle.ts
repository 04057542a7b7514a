/**
 * How a worker publishes the outcome of a delivery: the reply, the retry
 * and the dead letter. Everything it writes is bounded: the request's own
 * headers are kept only when they fit the contract's budget, and every value
 * the runtime adds is cut to a small size, so what it publishes always fits
 * in one AMQP frame and never fails for a request's sake.
 *
 * @module
 */

import type { Broker, Delivery, QueueOptions } from "../../core/broker/broker.ts";
import {
  ATTEMPT_HEADER,
  boundText,
  DEAD_LETTER_HEADERS,
  deadLetterQueueOf,
  type DeadLetterReason,
  encodeProgress,
  encodeReply,
  headerBytes,
  MAX_ERROR_MESSAGE_CHARS,
  MAX_ERROR_TYPE_CHARS,
  MAX_HEADER_BYTES,
  type Message,
  type MessageProperties,
  retryQueueOf,
  SENDER_HEADER,
  SENT_AT_HEADER,
  type TaskError,
  type TaskProgress,
  type TaskReply,
} from "../../core/contract/mod.ts";

// Retry queues are deleted this long after their last use, so that delays
// nobody uses any more leave no queues behind. Every retry redeclares its
// queue, so a queue holding a message is never this idle.
const RETRY_QUEUE_IDLE_MS = 60_000;

/** Longest id, user or worker name the runtime copies into a header. */
const MAX_NAME_CHARS = 128;

/**
 * The request's headers when they fit the budget, else none (and a note
 * saying so), without any `x-dlq-*` header it came with: those are the
 * runtime's record of a dead letter, which only a worker may write (a
 * replay trusts them on a letter its worker published).
 */
function keptHeaders(properties: MessageProperties): Record<string, unknown> {
  const { headers } = properties;
  if (headers === undefined) return {};
  if (headerBytes(headers, MAX_HEADER_BYTES) > MAX_HEADER_BYTES) {
    return { "x-dlq-headers-dropped": true };
  }
  const kept: Record<string, unknown> = {};
  for (const key in headers) {
    if (!key.startsWith("x-dlq-")) kept[key] = headers[key];
  }
  return kept;
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
}

/** What a dead letter says about why it is one. */
export interface DeadLetter {
  reason: DeadLetterReason;
  error: TaskError;
  attempts: number;
  /** The broker user who sent the request, when known. */
  sender?: string;
  /** How often the broker delivered it, for `delivery_limit`. */
  deliveries?: number;
  /**
   * Keep only the headers, not the body: for a body larger than the worker
   * accepts, which no replay could run and which would only double the
   * memory and the broker's disk it takes.
   */
  dropBody?: boolean;
}

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
  const workerId = boundText(options.workerId, MAX_NAME_CHARS);
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
      const headers: Record<string, unknown> = {
        ...keptHeaders(delivery.properties),
        [DEAD_LETTER_HEADERS.reason]: letter.reason,
        [DEAD_LETTER_HEADERS.errorType]: boundText(letter.error.type, MAX_ERROR_TYPE_CHARS),
        [DEAD_LETTER_HEADERS.errorMessage]: boundText(
          letter.error.message,
          MAX_ERROR_MESSAGE_CHARS,
        ),
        [DEAD_LETTER_HEADERS.attempts]: letter.attempts,
        [DEAD_LETTER_HEADERS.queue]: queue,
        [DEAD_LETTER_HEADERS.worker]: workerId,
        [DEAD_LETTER_HEADERS.at]: new Date().toISOString(),
      };
      if (letter.sender !== undefined) {
        headers[DEAD_LETTER_HEADERS.sender] = boundText(letter.sender, MAX_NAME_CHARS);
      }
      if (letter.deliveries !== undefined) {
        headers[DEAD_LETTER_HEADERS.deliveries] = letter.deliveries;
      }
      if (letter.dropBody) headers["x-dlq-body-bytes"] = delivery.body.byteLength;
      const message: Message = {
        body: letter.dropBody ? new Uint8Array() : delivery.body,
        properties: { ...republished(delivery.properties), headers },
      };
      await broker.publish(dlq, message);
    },
    async retry(delivery, retry) {
      const retryQueue = retryQueueOf(queue, retry.delayMs);
      const retryOptions: QueueOptions = {
        durable: true,
        type: queueType,
        messageTtlMs: retry.delayMs,
        deadLetterQueue: queue,
        expiresMs: retry.delayMs + RETRY_QUEUE_IDLE_MS,
      };
      await broker.declareQueue(retryQueue, retryOptions);
      const headers: Record<string, unknown> = {
        ...keptHeaders(delivery.properties),
        [ATTEMPT_HEADER]: retry.nextAttempt,
        // The next attempt's wait in the queue starts now.
        [SENT_AT_HEADER]: Date.now(),
      };
      if (retry.sender !== undefined) {
        headers[SENDER_HEADER] = boundText(retry.sender, MAX_NAME_CHARS);
      }
      const properties = { ...republished(delivery.properties), headers };
      if (retry.remainingMs !== undefined) {
        properties.expiration = String(Math.max(1, Math.ceil(retry.remainingMs)));
      }
      await broker.publish(retryQueue, { body: delivery.body, properties });
    },
  };
}
