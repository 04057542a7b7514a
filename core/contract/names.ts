/**
 * Names on the broker that callers, workers and operator tools agree on:
 * the queues a function owns, the exchanges, and the headers the runtime
 * writes. Nothing else in the product spells them out.
 *
 * @module
 */

/**
 * Names of functions and queues: lower_snake_case, at most 63 characters.
 * They hold no character that means something in a URL, a file name or a
 * regular expression, so broker permissions can be built from them.
 */
export const NAME_PATTERN = /^[a-z][a-z0-9_]{0,62}$/;

/** The queue a function's failures go to: `<queue>.dlq`. */
export function deadLetterQueueOf(queue: string): string {
  return `${queue}.dlq`;
}

/** The queue that holds a retry for `delayMs` before returning it to `queue`. */
export function retryQueueOf(queue: string, delayMs: number): string {
  return `${queue}.retry.${delayMs}`;
}

/** Matches the name of a retry queue of `queue` and captures its delay. */
export function retryQueuePattern(queue: string): RegExp {
  return new RegExp(`^${queue.replaceAll(".", "\\.")}\\.retry\\.(\\d+)$`);
}

/** The name of a worker's control queue: its work queue, `.control.`, 8 random hex digits. */
export function controlQueueOf(queue: string): string {
  const bytes = crypto.getRandomValues(new Uint8Array(4));
  const hex = [...bytes].map((byte) => byte.toString(16).padStart(2, "0")).join("");
  return `${queue}.control.${hex}`;
}

/**
 * The queue a dashboard receives task events on: `dashboard.events.<8 hex
 * digits>`, exclusive to its connection and bound to the events exchange.
 */
export function dashboardEventsQueueOf(): string {
  return `dashboard.events.${controlQueueOf("x").slice(-8)}`;
}

/** The work queue a dead-letter queue belongs to, or `undefined` when `name` is not one. */
export function queueOfDeadLetterQueue(name: string): string | undefined {
  const match = name.match(/^([a-z][a-z0-9_]{0,62})\.dlq$/);
  return match?.[1];
}

/**
 * Matches the name of a caller's own reply queue: `replies.` and 32 hex
 * digits. A caller that must get every reply through the loss of a broker
 * node (which Direct Reply-to cannot promise) declares one, a quorum queue
 * replicated like the functions' own; see docs/cluster.md.
 */
export const REPLY_QUEUE_PATTERN = /^replies\.[0-9a-f]{32}$/;

/** A new name for a caller's reply queue, matching {@linkcode REPLY_QUEUE_PATTERN}. */
export function replyQueueName(): string {
  return `replies.${crypto.randomUUID().replaceAll("-", "")}`;
}

/**
 * The fanout exchange of the control channel: every worker binds a queue of
 * its own to it, so one message published here reaches every live worker.
 */
export const CONTROL_EXCHANGE = "tasks.control";

/** Kept here for the modules that import it from the names: it lives in users.ts. */
export { DASHBOARD_USER } from "./users.ts";

/**
 * Header a caller may set on a request (and the runtime sets on a retry):
 * when it was sent, in milliseconds since the epoch, for the span of its
 * wait in the queue.
 */
export const SENT_AT_HEADER = "x-sent-at";

/** Header the runtime sets on a request it schedules for another attempt. */
export const ATTEMPT_HEADER = "x-attempt";

/**
 * Header the runtime sets on a retry: the broker user who sent the original
 * request. A retry is published by the worker's own user, so without it the
 * original sender would be lost.
 */
export const SENDER_HEADER = "x-sender";

/** Header RabbitMQ sets on a quorum queue's redeliveries: how often it was delivered before. */
export const DELIVERY_COUNT_HEADER = "x-delivery-count";

/** Headers of a dead letter written by a worker. */
export const DEAD_LETTER_HEADERS = {
  reason: "x-dlq-reason",
  errorType: "x-dlq-error-type",
  errorMessage: "x-dlq-error-message",
  attempts: "x-dlq-attempts",
  deliveries: "x-dlq-deliveries",
  queue: "x-dlq-queue",
  worker: "x-dlq-worker",
  sender: "x-dlq-sender",
  at: "x-dlq-at",
} as const;

/**
 * Why a request ended in `<queue>.dlq`, as in the `x-dlq-reason` header (or,
 * for letters the broker itself dead-lettered, its `x-death` reason):
 *
 * - `rejected`: it broke the contract (content type, size, JSON, fields);
 * - `unauthenticated`: its sender (`user_id`) may not call the function;
 * - `exhausted`: it failed on every attempt its retry policy allowed;
 * - `non_retryable`: it failed in a way another attempt cannot fix;
 * - `expired`: its deadline passed before it could run (or run again);
 * - `delivery_limit`: it was delivered `DELIVERY_LIMIT` times and never
 *   settled, because the worker died each time.
 */
export type DeadLetterReason =
  | "rejected"
  | "unauthenticated"
  | "exhausted"
  | "non_retryable"
  | "expired"
  | "delivery_limit";

/** Every {@linkcode DeadLetterReason}. */
export const DEAD_LETTER_REASONS: readonly DeadLetterReason[] = [
  "rejected",
  "unauthenticated",
  "exhausted",
  "non_retryable",
  "expired",
  "delivery_limit",
];
