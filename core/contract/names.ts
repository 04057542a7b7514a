/**
 * Names on the broker that callers, workers and operator tools agree on:
 * the queues a function owns, the exchanges, the headers the runtime
 * writes, and where a worker may send what it answers. Nothing else in the
 * product spells them out.
 *
 * @module
 */

import { boundText, type TaskError } from "./message.ts";
import { ownerOfNamedReplyQueue } from "./named_callers.ts";

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

/**
 * The delays of a function's retry queues, in milliseconds: a fixed ladder
 * from nothing to a day. Every wait (a retry's backoff, a Celery eta) is
 * taken in one of these queues, so the queues a worker needs are known, few
 * and declared when it starts: a client that fills the broker's queue limit
 * later cannot stop retries from being scheduled.
 */
export const RETRY_DELAYS_MS: readonly number[] = Object.freeze([
  0,
  5,
  10,
  20,
  50,
  100,
  150,
  200,
  300,
  500,
  700,
  1_000,
  1_500,
  2_000,
  3_000,
  5_000,
  7_000,
  10_000,
  15_000,
  20_000,
  30_000,
  60_000,
  120_000,
  300_000,
  600_000,
  1_800_000,
  3_600_000,
  10_800_000,
  21_600_000,
  43_200_000,
  86_400_000,
]);

/** The retry queues of `queue`, one per delay of {@linkcode RETRY_DELAYS_MS}. */
export function retryQueuesOf(queue: string): string[] {
  return RETRY_DELAYS_MS.map((delay) => retryQueueOf(queue, delay));
}

/**
 * The delay of `delays` (default {@linkcode RETRY_DELAYS_MS}) nearest to
 * `ms`, the shorter of two as near: how long a retry whose backoff says
 * `ms` waits.
 */
export function nearestRetryDelay(ms: number, delays: readonly number[] = RETRY_DELAYS_MS): number {
  let best = delays[0];
  for (const delay of delays) {
    if (Math.abs(delay - ms) < Math.abs(best - ms)) best = delay;
  }
  return best;
}

/**
 * The longest delay of `delays` (default {@linkcode RETRY_DELAYS_MS}) that
 * is at most `ms`: one hop of a wait that must not end early (a Celery eta),
 * which takes as many hops as it needs.
 */
export function retryDelayAtMost(ms: number, delays: readonly number[] = RETRY_DELAYS_MS): number {
  let best = delays[0];
  for (const delay of delays) if (delay <= ms && delay > best) best = delay;
  return best;
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

/** RabbitMQ's Direct Reply-to pseudo-queue: replies go to the caller's channel, no queue needed. */
export const DIRECT_REPLY_TO = "amq.rabbitmq.reply-to";

/**
 * Direct Reply-to as a caller names it, or as the broker rewrites it in the
 * request a worker receives (`amq.rabbitmq.reply-to.` and a token).
 */
const DIRECT_REPLY_TO_PATTERN = /^amq\.rabbitmq\.reply-to(\.[A-Za-z0-9+/=_.-]{1,230})?$/;

/**
 * Matches the reply queue of a Celery client: Celery 5's `rpc://` result
 * backend names it by a lowercase UUID (kombu's `oid_from`) and sets it as
 * every task's `reply_to`.
 */
export const CELERY_REPLY_QUEUE_PATTERN =
  /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * What a worker sends to a `reply_to`: the reply (and progress events) to a
 * native request, the result of a Celery request, or a pong to a ping.
 */
export type ReplyKind = "reply" | "celery" | "pong";

/**
 * Whether a worker may send `kind` to `replyTo`. A `reply_to` is chosen by
 * whoever sent the request, and the worker publishes there as its own
 * broker user, which its own queue, other functions' queues and callers
 * trust: so it names only places made for answers. Direct Reply-to always;
 * a caller's own reply queue (`replies.<32 hex>`) for replies and pongs
 * (a caller that uses one pings through it too); a named caller's queue
 * (`replies.named.<user>.<name>`, see `named_callers.ts`) for replies and
 * pongs to that user only, when `sender` is it; a Celery client's
 * UUID-named queue for Celery results. Never a function's queue, a retry,
 * dead-letter or control queue, or anything else.
 */
export function isReplyDestination(replyTo: string, kind: ReplyKind, sender?: string): boolean {
  if (DIRECT_REPLY_TO_PATTERN.test(replyTo)) return true;
  if (kind === "celery") return CELERY_REPLY_QUEUE_PATTERN.test(replyTo);
  if (REPLY_QUEUE_PATTERN.test(replyTo)) return true;
  const owner = ownerOfNamedReplyQueue(replyTo);
  return owner !== undefined && owner === sender;
}

/** The error type of a request whose `reply_to` is not a reply destination. */
export const INVALID_REPLY_TO = "InvalidReplyTo";

/**
 * Why a worker refuses `replyTo` for `kind` from `sender` (the request's
 * broker user, when known), or `undefined` when it may answer there (or
 * there is no `reply_to`: then it answers nobody).
 */
export function replyToError(
  replyTo: string | undefined,
  kind: ReplyKind,
  sender?: string,
): TaskError | undefined {
  if (replyTo === undefined || replyTo === "" || isReplyDestination(replyTo, kind, sender)) {
    return undefined;
  }
  const allowed = kind === "celery"
    ? "your Celery client's reply queue (a UUID, as Celery's rpc:// backend names it)"
    : "a reply queue of your own named replies.<32 hex digits> or replies.named.<your broker user>.<name>";
  return {
    type: INVALID_REPLY_TO,
    message: `Cannot answer to reply_to '${
      boundText(replyTo, 80)
    }' as it is not a reply destination: use Direct Reply-to (${DIRECT_REPLY_TO}) or ${allowed}`,
  };
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

/**
 * Header RabbitMQ sets on a quorum queue's redeliveries: how often it was
 * delivered before without being settled. Before RabbitMQ 4.3 every return
 * counts; from 4.3 only failed ones (a `basic.reject` with requeue, a
 * consumer that died), not a `basic.nack` with requeue.
 */
export const DELIVERY_COUNT_HEADER = "x-delivery-count";

/**
 * Header the runtime sets on a request it hands back unfinished (its worker
 * is stopping, or its sandbox restarted under it) by publishing a copy and
 * acknowledging the delivery: the failed deliveries it had before
 * (`x-delivery-count`, plus this header of an earlier copy), which the
 * copy's own count starts again without. Read only from the worker's own
 * user.
 */
export const PRIOR_DELIVERIES_HEADER = "x-prior-deliveries";

/**
 * Header RabbitMQ 4 sets on a quorum queue's redeliveries beside
 * `x-delivery-count`: how often it was acquired before. A copy the runtime
 * republishes must not inherit it.
 */
export const ACQUIRED_COUNT_HEADER = "x-acquired-count";
