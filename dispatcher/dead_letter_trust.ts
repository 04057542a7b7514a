/**
 * Whether a dead letter may be replayed, and as whose request. Replaying
 * publishes the letter as the tool's own (operator) user, which functions
 * accept by default, so a letter must prove where it came from, or replay
 * would launder a request from a sender the function refuses:
 *
 * - a letter a worker wrote (`x-dlq-reason`) must carry the `user_id` of the
 *   function's workers, which RabbitMQ verified; its `x-dlq-sender` (the
 *   original request's sender) and `x-dlq-allowed-senders` (the senders
 *   that worker accepted) are then trustworthy, and the sender must be one
 *   of those: the function's own, not a default list. A letter the worker
 *   refused for its sender (`unauthenticated`) is never replayed, nor one
 *   whose worker recorded no senders (written before workers did);
 * - a letter the broker dead-lettered itself (`x-death`, no `x-dlq-reason`:
 *   expired, or over the delivery limit) carries its original sender's
 *   `user_id` (or, for a copy the worker published, its `x-sender`), which
 *   must be one the tools allow by default;
 * - anything else is refused.
 *
 * Whatever the tool decides, the copy names the original sender
 * (`x-replayed-sender`) and the function's worker runs it only if it
 * accepts that sender itself: the last word is the function's.
 *
 * The tool's own user counts as the workers' too: where every party shares
 * one user (a bare RabbitMQ's guest) nobody can be told apart, and any user
 * allowed to send may send to the function's queue directly anyway.
 *
 * @module
 */

import type { Delivery } from "../core/broker/mod.ts";
import { BROKER_DEATH_HEADERS, DEAD_LETTER_HEADERS, SENDER_HEADER } from "../core/contract/mod.ts";
import { DEFAULT_ALLOWED_SENDERS } from "../core/contract/users.ts";

/** Who may have written a function's dead letters, and sent its requests. */
export interface LetterPolicy {
  /** The broker users the function's workers may run as. */
  workerUsers: ReadonlySet<string>;
  /**
   * The broker users a letter the broker dead-lettered may come from: the
   * default senders and the workers' users. A worker's own letters are
   * judged by the senders it recorded instead.
   */
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

/** Whether a letter may be replayed, and for whom. */
export type LetterVerdict = { ok: true; sender: string } | { ok: false; why: string };

const quote = (user: unknown) => typeof user === "string" ? `'${user}'` : "none";

/** Whether `delivery` may be replayed under `policy`, and the original sender it names. */
export function judgeLetter(delivery: Delivery, policy: LetterPolicy): LetterVerdict {
  const headers = delivery.properties.headers ?? {};
  const userId = delivery.properties.userId;
  const refuse = (why: string): LetterVerdict => ({ ok: false, why });
  const fromWorker = userId !== undefined && policy.workerUsers.has(userId);
  if (headers[DEAD_LETTER_HEADERS.reason] !== undefined) {
    if (!fromWorker) {
      return refuse(
        `its x-dlq-reason says a worker wrote it, but its user_id is ${
          quote(userId)
        }, not the function's workers' (${[...policy.workerUsers].join(", ")})`,
      );
    }
    const sender = headers[DEAD_LETTER_HEADERS.sender];
    if (typeof sender !== "string") {
      return refuse(
        "its worker recorded no sender (x-dlq-sender): the request came without user_id",
      );
    }
    if (headers[DEAD_LETTER_HEADERS.reason] === "unauthenticated") {
      return refuse(
        `the function refused its sender '${sender}' (unauthenticated): replayed as the operator, it would run what the function refused`,
      );
    }
    const recorded = headers[DEAD_LETTER_HEADERS.allowedSenders];
    if (typeof recorded !== "string") {
      return refuse(
        `its worker did not record the senders it accepts (x-dlq-allowed-senders), so its sender '${sender}' cannot be checked against the function's own: send it again as a new request if that sender may call the function`,
      );
    }
    const accepted = recorded.split(",");
    if (!accepted.includes("*") && !accepted.includes(sender)) {
      return refuse(
        `its sender '${sender}' may not call the function (it accepts: ${accepted.join(", ")})`,
      );
    }
    return { ok: true, sender };
  }
  if (headers[BROKER_DEATH_HEADERS.deaths] !== undefined) {
    // A copy the worker published (a retry, a task handed back) names the
    // original sender in x-sender, which only the worker's user may write.
    const sender = fromWorker ? headers[SENDER_HEADER] ?? userId : userId;
    if (typeof sender !== "string" || !policy.allowedSenders.has(sender)) {
      return refuse(
        `the broker dead-lettered it, but its sender ${
          quote(sender)
        } may not call the function (allowed: ${[...policy.allowedSenders].join(", ")})`,
      );
    }
    return { ok: true, sender };
  }
  return refuse(
    "neither a worker (x-dlq-reason) nor the broker (x-death) dead-lettered it: someone published it to the dead-letter queue",
  );
}

/** Why `delivery` may not be replayed under `policy`; `undefined` when it may. */
export function whyRefused(delivery: Delivery, policy: LetterPolicy): string | undefined {
  const verdict = judgeLetter(delivery, policy);
  return verdict.ok ? undefined : verdict.why;
}
