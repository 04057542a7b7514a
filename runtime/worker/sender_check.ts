/**
 * Who sent a delivery, and whether the function accepts requests from
 * them. RabbitMQ checks a message's `user_id` against the publishing
 * connection's user, so a worker can trust it; a request of a protocol
 * whose route proves its sender needs none (`protocols/protocol.ts`). A replayed dead
 * letter names its original sender (`x-replayed-sender`), which must be
 * accepted too: a replay never runs what the function refused.
 *
 * @module
 */

import type { Delivery } from "../../core/broker/broker.ts";
import {
  boundText,
  REPLAYED_SENDER_HEADER,
  SENDER_HEADER,
  type TaskError,
} from "../../core/contract/mod.ts";
import { GUEST_USER } from "../../core/contract/users.ts";

/** Who sent a delivery, if known, and whether it may run. */
export interface Sender {
  sender?: string;
  allowed: boolean;
  /** For a replayed dead letter: the user who replayed it (`sender` is the original's). */
  replayedBy?: string;
}

/**
 * Judges the sender of a delivery; `routedSender` is the sender its route
 * proves, if any (`WorkerProtocol.routedSender`).
 */
export type SenderCheck = (delivery: Delivery, routedSender?: string) => Sender;

/** Makes the sender check of a worker connected as `brokerUser`. */
export function createSenderCheck(
  brokerUser: string,
  senders: ReadonlySet<string>,
): SenderCheck {
  const anySender = senders.has("*");
  // On a broker without users of its own every party is guest: user_id
  // proves nothing there, so a request may leave it out.
  const anonymousOk = anySender || brokerUser === GUEST_USER;
  const bySender = (delivery: Delivery, routedSender: string | undefined): Sender => {
    if (routedSender !== undefined) return { sender: routedSender, allowed: true };
    const userId = delivery.properties.userId;
    if (userId === brokerUser) {
      // Only this worker's user can publish as it: a retry or a task handed
      // back, whose header keeps the original sender.
      const original = delivery.properties.headers?.[SENDER_HEADER];
      return { sender: typeof original === "string" ? original : userId, allowed: true };
    }
    if (userId === undefined) return { allowed: anonymousOk };
    return { sender: userId, allowed: anySender || senders.has(userId) };
  };
  return (delivery, routedSender) => {
    const judged = bySender(delivery, routedSender);
    const replayed = delivery.properties.headers?.[REPLAYED_SENDER_HEADER];
    if (replayed === undefined || !judged.allowed) return judged;
    // Whoever replays it, the original sender must be one the function accepts.
    const original = typeof replayed === "string" ? replayed : String(replayed);
    return {
      sender: original,
      replayedBy: judged.sender,
      allowed: typeof replayed === "string" &&
        (anySender || senders.has(original) || original === brokerUser),
    };
  };
}

/** The error a refused sender's request is dead-lettered with. */
export function unauthenticatedError(
  judged: Sender,
  senders: ReadonlySet<string>,
): TaskError {
  const accepted = [...senders].join(", ");
  const { sender, replayedBy } = judged;
  return {
    type: "Unauthenticated",
    message: sender === undefined
      ? `Cannot run a request without user_id: this function accepts requests from ${accepted} only`
      : replayedBy !== undefined
      ? `Cannot run a request replayed by '${boundText(replayedBy, 64)}' for broker user '${
        boundText(sender, 64)
      }': this function accepts requests from ${accepted} only`
      : `Cannot run a request from broker user '${
        boundText(sender, 64)
      }': this function accepts requests from ${accepted} only`,
  };
}
