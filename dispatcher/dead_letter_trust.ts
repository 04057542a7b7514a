/**
 * Whether a dead letter may be replayed. Replaying publishes the letter as
 * the tool's own (operator) user, which every function accepts, so a letter
 * must prove where it came from, or replay would launder a request from a
 * sender the function refuses:
 *
 * - a letter a worker wrote (`x-dlq-reason`) must carry the `user_id` of the
 *   function's workers, which RabbitMQ verified; its `x-dlq-sender` (the
 *   original request's sender, written by that worker) is then trustworthy
 *   and must be an allowed sender;
 * - a letter the broker dead-lettered itself (`x-death`, no `x-dlq-reason`:
 *   expired, or over the delivery limit) still carries its original sender's
 *   `user_id`, which must be an allowed sender;
 * - anything else is refused.
 *
 * The tool's own user counts as the workers' too: where every party shares
 * one user (a bare RabbitMQ's guest) nobody can be told apart, and any user
 * allowed to send may send to the function's queue directly anyway.
 *
 * @module
 */

import type { Delivery } from "../core/broker/broker.ts";
import { DEAD_LETTER_HEADERS } from "../core/contract/mod.ts";
import { DEFAULT_ALLOWED_SENDERS } from "../core/contract/users.ts";

/** Who may have written a function's dead letters, and sent its requests. */
export interface LetterPolicy {
  /** The broker users the function's workers may run as. */
  workerUsers: ReadonlySet<string>;
  /** The broker users whose requests the function accepts. */
  allowedSenders: ReadonlySet<string>;
}

/**
 * The policy for the dead letters of a function whose workers run as
 * `workerUser` (`undefined` when the queue is of no known function), read
 * by a tool connected as `ownUser`.
 */
export function letterPolicy(workerUser: string | undefined, ownUser: string): LetterPolicy {
  const workerUsers = new Set([ownUser]);
  if (workerUser !== undefined) workerUsers.add(workerUser);
  return {
    workerUsers,
    allowedSenders: new Set([...DEFAULT_ALLOWED_SENDERS, ...workerUsers]),
  };
}

/** Why `delivery` may not be replayed under `policy`; `undefined` when it may. */
export function whyRefused(delivery: Delivery, policy: LetterPolicy): string | undefined {
  const headers = delivery.properties.headers ?? {};
  const userId = delivery.properties.userId;
  const quote = (user: string | undefined) => user === undefined ? "none" : `'${user}'`;
  if (headers[DEAD_LETTER_HEADERS.reason] !== undefined) {
    if (userId === undefined || !policy.workerUsers.has(userId)) {
      return `its x-dlq-reason says a worker wrote it, but its user_id is ${
        quote(userId)
      }, not the function's workers' (${[...policy.workerUsers].join(", ")})`;
    }
    const sender = headers[DEAD_LETTER_HEADERS.sender];
    if (typeof sender !== "string") {
      return "its worker recorded no sender (x-dlq-sender): the request came without user_id";
    }
    if (!policy.allowedSenders.has(sender)) {
      return `its sender '${sender}' may not call the function (allowed: ${
        [...policy.allowedSenders].join(", ")
      })`;
    }
    return undefined;
  }
  if (headers["x-death"] !== undefined) {
    if (userId === undefined || !policy.allowedSenders.has(userId)) {
      return `the broker dead-lettered it, but its sender (user_id) ${
        quote(userId)
      } may not call the function (allowed: ${[...policy.allowedSenders].join(", ")})`;
    }
    return undefined;
  }
  return "neither a worker (x-dlq-reason) nor the broker (x-death) dead-lettered it: someone published it to the dead-letter queue";
}
