/**
 * Who may do what on the broker: one user per function (a Deno function's
 * workers, or a Celery worker's), one for the dispatcher, one for operator
 * tools, one for Celery clients and one for the administrator, as a RabbitMQ
 * definitions file that the broker imports at start. Permissions are RabbitMQ's three regular
 * expressions per user: `configure` (declare, delete), `write` (publish to an
 * exchange, bind a queue) and `read` (consume, get, purge, bind from an
 * exchange). Passive declarations (checking that a queue exists and how many
 * consumers it has) need none of them.
 *
 * @module
 */

import { CONTROL_EXCHANGE, DASHBOARD_USER, NAME_PATTERN } from "../../core/contract/names.ts";
import { EVENTS_EXCHANGE } from "../../core/contract/events.ts";
import { HASHING_ALGORITHM } from "./hash_password.ts";

export { CONTROL_EXCHANGE, DASHBOARD_USER, EVENTS_EXCHANGE, NAME_PATTERN };

/** The dispatcher's user. */
export const DISPATCHER_USER = "dispatcher";
/**
 * The operator tools' user (`deno task dlq`): reads dead letters and sends
 * them back to their functions, nothing else.
 */
export const OPERATOR_USER = "operator";
/** The administrator's user: the management UI, everything. */
export const ADMIN_USER = "admin";
/**
 * The Celery clients' user: Python programs that call Deno functions with
 * `delay()` and `send_task()` (docs/celery.md).
 */
export const CELERY_CLIENT_USER = "celery_client";

/**
 * Most queues the vhost may hold. Each function declares its work queue, its
 * dead letters, a control queue per replica and a bounded set of retry
 * queues (delays are quantized, see the worker's retries); this cap keeps a
 * flood of odd retry delays, or a bug, from exhausting the broker.
 */
export const MAX_QUEUES = 2000;
/**
 * RabbitMQ's default user. A broker that loads definitions at start does not
 * create it; one whose data predates this setup has it with the password
 * `guest`, so the definitions give it a random password nobody keeps and no
 * tags (permissions it had stay, but it can no longer log in).
 */
export const GUEST_USER = "guest";

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
const EVENTS = "tasks\\.events";

function checkQueue(queue: string): void {
  if (!NAME_PATTERN.test(queue)) {
    throw new TypeError(
      `Cannot grant permissions on queue '${queue}' as it is not lower_snake_case: use letters, digits and _`,
    );
  }
}

/**
 * The names Celery's `rpc://` result backend gives the reply queue it
 * declares: a UUID per client process (kombu's `oid_from`).
 */
export const CELERY_REPLY_QUEUE = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";

/**
 * A Celery client calling the Deno functions on `queues`: it publishes
 * through each queue's Celery route (the exchange named after the queue;
 * the client settings of docs/celery.md declare nothing and never use the
 * default exchange), and declares and consumes the one reply queue of its
 * `rpc://` result backend, named by a UUID. Workers reply to that queue
 * through the default exchange, which needs no permission of the client.
 * Write on a queue's name also allows binding that queue, but only to an
 * exchange the client may read: a UUID-named one, to which it may not
 * publish.
 */
export function celeryClientPermissions(queues: readonly string[]): Permissions {
  queues.forEach(checkQueue);
  const routes = queues.length === 0 ? "^$" : `^(${queues.join("|")})$`;
  return {
    configure: `^${CELERY_REPLY_QUEUE}$`,
    write: routes,
    read: `^${CELERY_REPLY_QUEUE}$`,
  };
}

/**
 * A Celery worker (`celery worker -Q <queue>` with remote control, gossip,
 * mingle and heartbeats off, as docs/celery.md configures it): it declares
 * and consumes its one queue, and the direct exchange of the same name that
 * Celery always binds a queue to (write on the queue, read on the exchange),
 * and publishes its `rpc://` results (and its own retries) through the
 * default exchange.
 */
export function celeryWorkerPermissions(queue: string): Permissions {
  checkQueue(queue);
  return {
    configure: `^${queue}$`,
    write: `^(${DEFAULT_EXCHANGE}|${queue})$`,
    read: `^${queue}$`,
  };
}

/**
 * A function's worker: it declares exactly the queues it uses (its work
 * queue, `<queue>.dlq`, `<queue>.retry.<ms>` and `<queue>.control.<8 hex>`),
 * consumes its work and control queues, binds its control queue to the
 * control exchange, and publishes replies, retries and dead letters through
 * the default exchange, and task events to the events exchange. RabbitMQ
 * asks for read on a queue declared with a
 * dead-letter target (its work and retry queues), as the broker moves
 * messages out of it on the declarer's behalf. It declares the Celery route
 * of its queue (a direct exchange named after it, bound to it), which takes
 * write on the queue for the binding: that also lets it publish to its own
 * route, which reaches only itself. Queue names are lower_snake_case, so
 * they carry no regular-expression syntax, and `queue_a` never matches
 * `queue_ab`.
 */
export function workerPermissions(queue: string): Permissions {
  checkQueue(queue);
  const control = `${queue}\\.control\\.[0-9a-f]{8}`;
  return {
    configure: `^${queue}(\\.dlq|\\.retry\\.[0-9]+|\\.control\\.[0-9a-f]{8})?$`,
    write: `^(${DEFAULT_EXCHANGE}|${EVENTS}|${control}|${queue})$`,
    read: `^(${queue}(\\.retry\\.[0-9]+)?|${control}|${CONTROL})$`,
  };
}

/** A caller's own reply queue, `replies.<32 hex>` (contract `REPLY_QUEUE_PATTERN`). */
const REPLIES = "replies\\.[0-9a-f]{32}";

/**
 * The dispatcher: publishes requests through the default exchange and pings
 * to the control exchange, checks queues passively, and receives replies by
 * Direct Reply-to (which needs no permission) or, on a cluster, through a
 * reply queue of its own (`replies.<32 hex>`), which it declares, consumes
 * and deletes: that is all it may declare, consume or delete. Every
 * dispatcher shares the user, so one could read another's replies only by
 * knowing its queue's random name.
 */
export const DISPATCHER_PERMISSIONS: Readonly<Permissions> = Object.freeze({
  configure: `^${REPLIES}$`,
  write: `^(${DEFAULT_EXCHANGE}|${CONTROL}|${EVENTS})$`,
  read: `^${REPLIES}$`,
});

/**
 * The operator tools: read (and remove) dead letters of any function, and
 * publish them back through the default exchange. They declare, consume or
 * purge no function queue.
 */
export const OPERATOR_PERMISSIONS: Readonly<Permissions> = Object.freeze({
  configure: "^$",
  write: `^${DEFAULT_EXCHANGE}$`,
  read: "^[a-z][a-z0-9_]{0,62}\\.dlq$",
});

const DASHBOARD_QUEUE = "dashboard\\.events\\.[0-9a-f]{8}";

/**
 * `deno task dashboard`: watches and changes nothing. It reads queue depths
 * and consumers by passive declarations (no permission), receives task
 * events on an exclusive queue of its own (`dashboard.events.<8 hex>`:
 * declared, bound (write on it, read on the events exchange) and consumed),
 * and pings workers through the control exchange, which answer on Direct
 * Reply-to (no permission). It reads no function queue or dead letter,
 * publishes no request, and has no management API tag. Replays go through
 * the operator user.
 */
export const DASHBOARD_PERMISSIONS: Readonly<Permissions> = Object.freeze({
  configure: `^${DASHBOARD_QUEUE}$`,
  write: `^(${DASHBOARD_QUEUE}|${CONTROL})$`,
  read: `^(${DASHBOARD_QUEUE}|${EVENTS})$`,
});

/** The administrator: everything, and the management UI. */
export const ADMIN_PERMISSIONS: Readonly<Permissions> = Object.freeze({
  configure: ".*",
  write: ".*",
  read: ".*",
});

/** RabbitMQ's definitions format, as much of it as this file sets. */
export interface Definitions {
  users: { name: string; password_hash: string; hashing_algorithm: string; tags: string[] }[];
  vhosts: { name: string }[];
  parameters: {
    vhost: string;
    component: "vhost-limits";
    name: "limits";
    value: { "max-queues": number };
  }[];
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
    parameters: [{
      vhost: "/",
      component: "vhost-limits",
      name: "limits",
      value: { "max-queues": MAX_QUEUES },
    }],
    permissions: users.flatMap((user) =>
      user.permissions ? [{ user: user.name, vhost: "/", ...user.permissions }] : []
    ),
    exchanges: [CONTROL_EXCHANGE, EVENTS_EXCHANGE].map((name) => ({
      name,
      vhost: "/",
      type: "fanout",
      durable: true,
      auto_delete: false,
      internal: false,
      arguments: {},
    })),
  };
}
