/**
 * Whom a caller believes. RabbitMQ checks the `user_id` of every message
 * against the user of the connection that published it, so a reply or a
 * pong names its sender truthfully. A caller accepts one only from the
 * broker user of the function's workers, or from its own user (deployments
 * where every party shares one user, like a bare RabbitMQ's `guest`).
 * Anything else, such as a reply forged by another function's worker that
 * learned a correlation id, is counted and ignored.
 *
 * @module
 */

import { GUEST_USER } from "../core/contract/users.ts";

/**
 * Whether a reply or pong that carries `userId` may come from the workers of
 * a function whose broker user is `expected`, as received on a connection
 * of `ownUser`. Without `user_id` only a `guest` connection accepts it: such
 * brokers have no users to tell apart.
 */
export function isExpectedSender(
  userId: string | undefined,
  expected: string,
  ownUser: string,
): boolean {
  if (userId === undefined) return ownUser === GUEST_USER;
  return userId === expected || userId === ownUser;
}

/** The warning for `count` answers (replies or pongs) that did not count, naming the fix. */
export function unexpectedSenders(count: number, what: "reply" | "pong", ownUser: string): string {
  const noun = count === 1 ? what : what === "reply" ? "replies" : "pongs";
  return `Ignored ${count} ${noun} from unexpected senders: a function's answers count only from its workers' broker user (its 'user' in functions/registry.yaml, a configuration's functions: or the client's functions option, default its name) or ${ownUser}. If those are your workers, set 'user' to the broker user they run as`;
}
