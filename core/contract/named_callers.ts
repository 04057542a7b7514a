/**
 * Named callers: a caller that connects with a name of its own keeps a
 * durable reply queue named from its broker user and that name,
 * `replies.named.<user>.<name>`, a quorum queue that outlives the caller's
 * process, so that a caller which restarts (or moves to another machine)
 * collects the results of the calls it submitted before.
 *
 * Each request such a caller submits is published once, with RabbitMQ's
 * sender-selected distribution (the `BCC` header): the broker routes it to
 * the function's queue and a copy to the caller's own queue in one step, so
 * the caller's queue holds a record of every call the broker took, and of
 * no other. The copy keeps the routing key it was published with (the
 * function's queue), which tells it from a reply. The header itself never
 * reaches the worker.
 *
 * A worker answers into a named queue only for a request whose sender is
 * the user the queue is named after: no other party can make a worker write
 * a reply, as the function's user, into a caller's queue whose name is easy
 * to guess.
 *
 * @module
 */

/**
 * The shape of a caller's name: lowercase letters, digits, `_` and `-`, at
 * most 64 characters, starting with a letter or digit. Nothing in it means
 * something in a queue name, a regular expression or a file name.
 */
export const CALLER_NAME_PATTERN = /^[a-z0-9][a-z0-9_-]{0,63}$/;

/**
 * The broker users whose named queues exist: lower_snake_case, as every user
 * of the stack and every function's user is.
 */
const OWNER_PATTERN = /^[a-z][a-z0-9_]{0,62}$/;

/** Matches a named reply queue and captures its owner and its name. */
export const NAMED_REPLY_QUEUE_PATTERN =
  /^replies\.named\.([a-z][a-z0-9_]{0,62})\.([a-z0-9][a-z0-9_-]{0,63})$/;

/** The regular expression of {@linkcode NAMED_REPLY_QUEUE_PATTERN} for one owner, for permissions. */
export function namedReplyQueuesOf(owner: string): string {
  checkOwner(owner);
  return `replies\\.named\\.${owner}\\.[a-z0-9][a-z0-9_-]{0,63}`;
}

function checkOwner(owner: string): void {
  if (!OWNER_PATTERN.test(owner)) {
    throw new TypeError(
      `Cannot name a reply queue for broker user '${owner}' as it is not lower_snake_case: connect as a user named with letters, digits and _`,
    );
  }
}

/**
 * The durable reply queue of the caller `name` of broker user `owner`;
 * a `TypeError` naming the fix for a name of the wrong shape.
 */
export function namedReplyQueueOf(owner: string, name: string): string {
  checkOwner(owner);
  if (!CALLER_NAME_PATTERN.test(name)) {
    throw new TypeError(
      `Cannot use the caller name '${
        name.slice(0, 80)
      }': use 1 to 64 lowercase letters, digits, _ and -, starting with a letter or digit`,
    );
  }
  return `replies.named.${owner}.${name}`;
}

/** The broker user a named reply queue belongs to, or `undefined` when `queue` is not one. */
export function ownerOfNamedReplyQueue(queue: string): string | undefined {
  return queue.match(NAMED_REPLY_QUEUE_PATTERN)?.[1];
}

/**
 * RabbitMQ's sender-selected distribution header: the queues, besides the
 * routing key's, that receive a copy of the message. The broker removes it
 * before delivery.
 */
export const BCC_HEADER = "BCC";

/**
 * AMQP `type` of the marker a named caller sends to its own queue when it
 * starts: once the marker comes back, every record and reply that was in
 * the queue before it has been delivered (a queue keeps its order).
 */
export const SYNC_MESSAGE_TYPE = "caller.sync";

/**
 * Most calls a named caller holds submitted and not collected at once: each
 * takes a record in its queue, and its reply another message, until it is
 * collected. Both stay unacknowledged, so the caller's prefetch
 * ({@linkcode NAMED_REPLY_PREFETCH}) must hold two for each.
 */
export const MAX_OUTSTANDING_CALLS = 32_000;

/**
 * The prefetch a named caller consumes its queue with: the most AMQP 0-9-1
 * allows. Not 0 ("no limit"): a quorum queue gives such a consumer 2,000
 * messages at most, and a caller holding 1,000 calls' records and replies
 * waited for good for its marker behind them.
 */
export const NAMED_REPLY_PREFETCH = 65_535;

/**
 * How long a named reply queue stays without a consumer before the broker
 * deletes it, with the records and results it holds: a caller away longer
 * loses them. The client asks for {@linkcode NAMED_REPLY_QUEUE_IDLE_MS} by
 * default; the compose stack's operator policy caps any caller at this.
 */
export const NAMED_REPLY_QUEUE_MAX_IDLE_MS = 24 * 60 * 60_000;

/**
 * Most messages a named reply queue holds (`x-max-length`, refusing more):
 * a record and a reply for each call the client allows outstanding, and room
 * for progress events. The client's own bound comes first.
 */
export const NAMED_REPLY_QUEUE_MAX_LENGTH = 2 * MAX_OUTSTANDING_CALLS + 10_000;

/** How long a named reply queue waits for its caller by default. */
export const NAMED_REPLY_QUEUE_IDLE_MS = 60 * 60_000;
