/**
 * Who may do what on the broker: one user per function, one for the
 * dispatcher and one for the operator, as a RabbitMQ definitions file that
 * the broker imports at start. Permissions are RabbitMQ's three regular
 * expressions per user: `configure` (declare, delete), `write` (publish to an
 * exchange, bind a queue) and `read` (consume, get, purge, bind from an
 * exchange). Passive declarations (checking that a queue exists and how many
 * consumers it has) need none of them.
 *
 * @module
 */

import { HASHING_ALGORITHM } from "./hash_password.ts";

/** The fanout exchange of the worker control channel, declared by the broker. */
export const CONTROL_EXCHANGE = "tasks.control";
/** The dispatcher's user. */
export const DISPATCHER_USER = "dispatcher";
/** The operator's user: the management UI and operator tools. */
export const ADMIN_USER = "admin";
/**
 * RabbitMQ's default user. A broker that loads definitions at start does not
 * create it; one whose data predates this setup has it with the password
 * `guest`, so the definitions give it a random password nobody keeps and no
 * tags (permissions it had stay, but it can no longer log in).
 */
export const GUEST_USER = "guest";

/**
 * Names of functions and queues, as the runtime requires them
 * (functions/_runtime/define_function.ts NAME_PATTERN): they contain no
 * character that means something in a regular expression.
 */
export const NAME_PATTERN = /^[a-z][a-z0-9_]{0,62}$/;

/** A user's permissions on the vhost `/`: regular expressions over resource names. */
export interface Permissions {
  configure: string;
  write: string;
  read: string;
}

/** A function and the queue it consumes; its user is named after the function. */
export interface FunctionQueue {
  name: string;
  queue: string;
}

/** A user to create, with its password hash; without `permissions` it may not use the vhost. */
export interface User {
  name: string;
  passwordHash: string;
  tags: string[];
  permissions?: Permissions;
}

// RabbitMQ checks publishing to the default exchange ("") as writing to
// "amq.default".
const DEFAULT_EXCHANGE = "amq\\.default";
const CONTROL = "tasks\\.control";

/**
 * A function's worker: it declares, consumes and binds only its own queue
 * and the queues named after it (`<queue>.dlq`, `<queue>.retry.<ms>`,
 * `<queue>.control.<id>`), reads the control exchange to bind to it, and
 * publishes replies, retries and dead letters through the default exchange.
 */
export function workerPermissions(queue: string): Permissions {
  if (!NAME_PATTERN.test(queue)) {
    throw new TypeError(
      `Cannot grant permissions on queue '${queue}' as it is not lower_snake_case: use letters, digits and _`,
    );
  }
  const own = `${queue}(\\..+)?`;
  return {
    configure: `^${own}$`,
    write: `^(${DEFAULT_EXCHANGE}|${own})$`,
    read: `^(${own}|${CONTROL})$`,
  };
}

/**
 * The dispatcher: publishes requests through the default exchange and pings
 * to the control exchange, receives replies by Direct Reply-to (which needs
 * no permission), checks queues passively, and declares, consumes and
 * deletes nothing.
 */
export const DISPATCHER_PERMISSIONS: Readonly<Permissions> = Object.freeze({
  configure: "^$",
  write: `^(${DEFAULT_EXCHANGE}|${CONTROL})$`,
  read: "^$",
});

/** The operator: everything, and the management UI. */
export const ADMIN_PERMISSIONS: Readonly<Permissions> = Object.freeze({
  configure: ".*",
  write: ".*",
  read: ".*",
});

/** RabbitMQ's definitions format, as much of it as this file sets. */
export interface Definitions {
  users: { name: string; password_hash: string; hashing_algorithm: string; tags: string[] }[];
  vhosts: { name: string }[];
  permissions: ({ user: string; vhost: string } & Permissions)[];
  exchanges: {
    name: string;
    vhost: string;
    type: string;
    durable: boolean;
    auto_delete: boolean;
    internal: boolean;
    arguments: Record<string, never>;
  }[];
}

/**
 * The definitions for `users` on the vhost `/`, with the control exchange.
 * The broker creates no default user (guest) when it loads definitions at
 * start, so these are all the users it has (see {@linkcode GUEST_USER}).
 */
export function buildDefinitions(users: readonly User[]): Definitions {
  return {
    users: users.map((user) => ({
      name: user.name,
      password_hash: user.passwordHash,
      hashing_algorithm: HASHING_ALGORITHM,
      tags: user.tags,
    })),
    vhosts: [{ name: "/" }],
    permissions: users.flatMap((user) =>
      user.permissions ? [{ user: user.name, vhost: "/", ...user.permissions }] : []
    ),
    exchanges: [{
      name: CONTROL_EXCHANGE,
      vhost: "/",
      type: "fanout",
      durable: true,
      auto_delete: false,
      internal: false,
      arguments: {},
    }],
  };
}
