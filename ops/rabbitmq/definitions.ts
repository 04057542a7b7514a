/**
 * Who may do what on the broker: one user per function (a Deno function's
 * workers, or a Celery worker's), one for the dispatcher, one for operator
 * tools, one for the dashboard, one for Celery clients and one for the
 * administrator (their names are in core/contract/users.ts), as a RabbitMQ
 * definitions file that the broker imports at start. Permissions are
 * RabbitMQ's three regular expressions per user: `configure` (declare,
 * delete), `write` (publish to an exchange, bind a queue) and `read`
 * (consume, get, purge, bind from an exchange).
 *
 * A passive declaration (checking that a queue exists, its depth and its
 * consumers) needed none of them before RabbitMQ 4.2.6; 4.2.6 and 4.3.0 ask
 * for `configure` on the queue, and 4.3.1 and later for any of the three.
 * Each tool that checks a queue passively is granted the least that
 * 4.3.1 takes on exactly the queues it checks, where that opens no way to
 * fill or drain a queue that is not its own: see each user's permissions.
 *
 * @module
 */

import { CONTROL_EXCHANGE, NAME_PATTERN } from "../../core/contract/names.ts";
import { EVENTS_EXCHANGE } from "../../core/contract/events.ts";
import {
  CLOUD_EVENTS_EXCHANGE,
  exactRegex,
  topicPatternRegex,
} from "../../core/contract/cloud_events.ts";
import {
  CANCELLATIONS_STREAM,
  CANCELLATIONS_STREAM_ARGUMENTS,
} from "../../core/contract/cancel.ts";
import {
  GATEWAY_CALLS_STREAM,
  GATEWAY_CALLS_STREAM_ARGUMENTS,
} from "../../core/contract/gateway_calls.ts";
import {
  NAMED_REPLY_QUEUE_MAX_IDLE_MS,
  NAMED_REPLY_QUEUE_MAX_LENGTH,
  namedReplyQueuesOf,
} from "../../core/contract/named_callers.ts";
import { SCHEDULE_EXCHANGE, SCHEDULER_QUEUE } from "../../core/contract/schedule.ts";
import {
  CELERY_CLIENT_USER,
  DASHBOARD_USER,
  DISPATCHER_USER,
  GATEWAY_USER,
} from "../../core/contract/users.ts";
import { HASHING_ALGORITHM } from "./hash_password.ts";

export { CONTROL_EXCHANGE, EVENTS_EXCHANGE, NAME_PATTERN, SCHEDULE_EXCHANGE };

/**
 * Most queues the vhost may hold (`max-queues`), a budget every user
 * shares: RabbitMQ has no per-user queue limit. What each user may take of
 * it is bounded where RabbitMQ allows (docs/security.md, "What each user
 * can exhaust"):
 *
 * - a Deno function's worker: its work queue, its dead letters and its
 *   retry ladder ({@linkcode RETRY_QUEUES_PER_FUNCTION}), declared once and
 *   kept (declaring a queue that exists again takes nothing), and one
 *   exclusive control queue per replica;
 * - the dashboards: {@linkcode DASHBOARD_EVENT_QUEUES}, named, so that the
 *   broker refuses a ninth by name;
 * - reply queues of callers (`replies.<32 hex>`) and Celery clients (a
 *   UUID each): not countable by name, so an operator policy
 *   ({@linkcode OPERATOR_POLICIES}) removes each one unused for
 *   {@linkcode CLIENT_QUEUE_EXPIRES_MS};
 * - named callers' queues (`replies.named.<user>.<name>`): one per name a
 *   caller uses, not countable by name either; an operator policy removes
 *   each one unused for `NAMED_REPLY_QUEUE_MAX_IDLE_MS` (a day) and caps what
 *   it holds;
 * - the streams of cancellations and of the gateway replicas' record
 *   (`gateway.calls`), two queues, made by these definitions; the gateway's
 *   replicas share one named reply queue, `replies.named.gateway.calls`.
 *
 * 20 functions with 10 replicas each take 20 × 34 + 200 = 880, the
 * dashboards 8: the rest is for reply queues.
 */
export const MAX_QUEUES = 2000;

/**
 * Retry queues a function's worker declares: the delays of its retry ladder,
 * to which the worker quantizes every retry and Celery `eta`.
 */
export const RETRY_QUEUES_PER_FUNCTION = 32;

/**
 * The queues `deno task dashboard` receives task events on: one each,
 * exclusive to its connection, the first free one. Eight names, so no
 * dashboard user, however hostile, declares a ninth queue.
 */
export const DASHBOARD_EVENT_QUEUES: readonly string[] = Object.freeze(
  Array.from({ length: 8 }, (_, slot) => `dashboard.events.${slot}`),
);

/**
 * Most bytes a named caller's queue holds (operator policy `named-replies`):
 * its outstanding calls' requests and their results, about 5 KiB each at
 * the most calls its client lets wait.
 */
export const NAMED_REPLY_QUEUE_MAX_BYTES = 512 * 1024 * 1024;

/**
 * How long a caller's, a Celery client's or a dashboard's queue may stay
 * unused (no consumer, not declared again) before the broker deletes it:
 * the clients' own reply queues expire after as long
 * (`REPLY_QUEUE_IDLE_MS`), so this only ends queues made and left.
 */
export const CLIENT_QUEUE_EXPIRES_MS = 10 * 60_000;
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

/** How many connections and channels a user may hold at once (RabbitMQ's user limits). */
export interface UserLimits {
  "max-connections": number;
  "max-channels": number;
}

/** A user to create, with its password hash; without `permissions` it may not use the vhost. */
export interface User {
  name: string;
  passwordHash: string;
  tags: string[];
  permissions?: Permissions;
  /** Without limits, as many connections and channels as the broker takes. */
  limits?: UserLimits;
  /** Its topic permission on the events exchange, for a user that may use it. */
  topicPermission?: TopicPermission;
}

// RabbitMQ checks publishing to the default exchange ("") as writing to
// "amq.default".
const DEFAULT_EXCHANGE = "amq\\.default";
const CONTROL = "tasks\\.control";
const EVENTS = "tasks\\.events";
const CANCELLATIONS = CANCELLATIONS_STREAM.replaceAll(".", "\\.");
const GATEWAY_CALLS = GATEWAY_CALLS_STREAM.replaceAll(".", "\\.");
/** The topic exchange of the events that trigger functions (docs/events.md). */
const CLOUD_EVENTS = "events";

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
 * consumes its work and control queues and the cancellations stream, binds
 * its control queue to the control exchange, and publishes replies,
 * retries, dead letters and its marker on the stream through the default
 * exchange, and task events to the events exchange. RabbitMQ
 * asks for read on a queue declared with a
 * dead-letter target (its work and retry queues), as the broker moves
 * messages out of it on the declarer's behalf. It declares the Celery route
 * of its queue (a direct exchange named after it, bound to it), which takes
 * write on the queue for the binding: that also lets it publish to its own
 * route, which reaches only itself. Queue names are lower_snake_case, so
 * they carry no regular-expression syntax, and `queue_a` never matches
 * `queue_ab`.
 */
export function workerPermissions(
  queue: string,
  options: WorkerPermissionsOptions = {},
): Permissions {
  checkQueue(queue);
  const control = `${queue}\\.control\\.[0-9a-f]{8}`;
  const retry = retryPattern(options.retryDelaysMs);
  // The events exchange: written to when it emits, read (its queue bound
  // there) when it has triggers; the topic permissions say which types.
  const emits = options.emits ? `|${CLOUD_EVENTS}` : "";
  const triggered = options.triggers?.length ? `|${CLOUD_EVENTS}` : "";
  return {
    configure: `^${queue}(\\.dlq|\\.retry\\.${retry}|\\.control\\.[0-9a-f]{8})?$`,
    write: `^(${DEFAULT_EXCHANGE}|${EVENTS}|${control}|${queue}${emits})$`,
    read: `^(${queue}(\\.retry\\.${retry})?|${control}|${CONTROL}|${CANCELLATIONS}${triggered})$`,
  };
}

/** Options for {@linkcode workerPermissions}. */
export interface WorkerPermissionsOptions {
  /** The topic patterns its queue is bound with on the events exchange, if any. */
  triggers?: readonly string[];
  /** The event type it emits, if any. */
  emits?: string;
  /**
   * The worker's retry ladder: with it, the worker may declare exactly these
   * retry queues (`<queue>.retry.<ms>`), and no user of a function can take
   * more of the vhost's budget than its ladder. Without it, any delay.
   */
  retryDelaysMs?: readonly number[];
}

function retryPattern(delays: readonly number[] | undefined): string {
  if (delays === undefined) return "[0-9]+";
  if (delays.length === 0 || !delays.every((ms) => Number.isSafeInteger(ms) && ms >= 0)) {
    throw new TypeError(
      `Cannot grant retry queues for delays ${
        JSON.stringify(delays)
      }: give whole milliseconds, at least one`,
    );
  }
  return `(${[...new Set(delays)].sort((a, b) => a - b).join("|")})`;
}

/** A caller's own reply queue, `replies.<32 hex>` (contract `REPLY_QUEUE_PATTERN`). */
const REPLIES = "replies\\.[0-9a-f]{32}";

/**
 * The dispatcher (`deno task dispatch`, `load`, `status`, `cancel`):
 * publishes requests and cancellations through the default exchange and
 * pings to the control exchange, and receives replies by Direct Reply-to
 * (which needs no permission), or, on a cluster, through a reply queue of
 * its own (`replies.<32 hex>`), or, as a named caller, its named queue
 * (`replies.named.dispatcher.<name>`), which it declares, consumes and
 * deletes: that is all it may declare, consume or delete. Every dispatcher
 * shares the user, so one could read another's replies by knowing its
 * queue's name: a random one, or the name a named caller chose.
 *
 * It checks the functions' `queues` and their dead letters passively
 * (workers waited for, `deno task status`), and the cancellations stream
 * (`deno task cancel`), which RabbitMQ 4.3.1 allows with `write` on them. Write on a queue lets a user bind it to an exchange it
 * may read, and the only ones this user may read are its own reply-queue
 * names, which only the administrator may publish to: no new way into a
 * function's queue, which the dispatcher fills through the default exchange
 * anyway. Write on the names also covers the exchange a worker declares
 * for its queue's Celery route, which reaches that queue alone.
 */
export function dispatcherPermissions(queues: readonly string[]): Permissions {
  queues.forEach(checkQueue);
  const checked = queues.length === 0 ? "" : `|(${[...new Set(queues)].join("|")})(\\.dlq)?`;
  const replies = `(${REPLIES}|${namedReplyQueuesOf(DISPATCHER_USER)})`;
  // The events exchange too: its topic permission (topicPermissionsOf) says
  // which event types, none unless the registry's events.emitters grants some.
  return {
    configure: `^${replies}$`,
    write:
      `^(${DEFAULT_EXCHANGE}|${CONTROL}|${EVENTS}|${CLOUD_EVENTS}|${CANCELLATIONS}${checked})$`,
    read: `^${replies}$`,
  };
}

/**
 * `deno task gateway` (docs/gateway.md): what a caller needs and no more.
 * It publishes requests and cancellations through the default exchange and
 * events to the events exchange (its topic permission says which types: the
 * registry's `events.emitters.gateway`), receives replies by Direct
 * Reply-to or a reply queue or named queue of its own, and checks the
 * functions' `queues` passively (503 when one has no worker), which
 * RabbitMQ 4.3.1 allows with `write` on them. Its replicas share a record
 * of asynchronous calls (docs/gateway.md, "What holds across replicas"):
 * they read and append to the stream `gateway.calls` (read on it; appends
 * go through the default exchange; it checks the stream passively, which
 * read allows on 4.3.1), and consume one named reply queue of theirs,
 * `replies.named.gateway.calls`, which its named queues' rights cover. No
 * configure on the stream: these definitions make it. No control exchange
 * (it pings no worker), no task events, no dead letters.
 */
export function gatewayPermissions(queues: readonly string[]): Permissions {
  queues.forEach(checkQueue);
  const checked = queues.length === 0 ? "" : `|${[...new Set(queues)].sort().join("|")}`;
  const replies = `(${REPLIES}|${namedReplyQueuesOf(GATEWAY_USER)})`;
  return {
    configure: `^${replies}$`,
    write: `^(${DEFAULT_EXCHANGE}|${CLOUD_EVENTS}|${CANCELLATIONS}${checked})$`,
    read: `^(${REPLIES}|${namedReplyQueuesOf(GATEWAY_USER)}|${GATEWAY_CALLS})$`,
  };
}

/** A user's topic permission on the events exchange: regular expressions over routing keys. */
export interface TopicPermission {
  exchange: string;
  /** Event types it may publish. */
  write: string;
  /** Binding keys it may bind its queue with. */
  read: string;
}

/** What a user may do with events, by the registry. */
export interface EventGrants {
  /** A function's triggers: binding keys of its queue. */
  triggers?: readonly string[];
  /** A function's one event type. */
  emits?: string;
  /** An emitter's grant (`events.emitters`): topic patterns of what it may publish. */
  emitterPatterns?: readonly string[];
}

/**
 * The topic permission on the events exchange of a user that may use it
 * (write or read on it): a function's user publishes exactly its `emits`
 * and binds exactly its triggers; an emitter publishes what its patterns
 * match. RabbitMQ lets a user with no topic permission on an exchange
 * publish and bind anything there, so every user that may write or read
 * it gets one, `^$` (nothing) where the registry grants nothing. RabbitMQ
 * 3.10 and 4.0 check write on published routing keys and read on binding
 * keys (tests/events_test.ts).
 */
export function topicPermissionsOf(grants: EventGrants): TopicPermission {
  const publish = grants.emits !== undefined
    ? exactRegex([grants.emits])
    : grants.emitterPatterns?.length
    ? grants.emitterPatterns.map(topicPatternRegex).join("|")
    : "^$";
  return {
    exchange: CLOUD_EVENTS_EXCHANGE,
    write: publish,
    read: exactRegex(grants.triggers ?? []),
  };
}

/**
 * The operator tools: read (and remove) dead letters of any function, and
 * publish them back through the default exchange; cancel any call through
 * the same exchange (`deno task cancel --operator`). They declare, consume
 * or purge no function queue. Their passive checks are of dead-letter
 * queues, which `read` covers on RabbitMQ 4.3.1 and later, and of the
 * cancellations stream, which `write` on it covers (it lets them bind the
 * stream only to an exchange they may read: none).
 */
export const OPERATOR_PERMISSIONS: Readonly<Permissions> = Object.freeze({
  configure: "^$",
  write: `^(${DEFAULT_EXCHANGE}|${CANCELLATIONS})$`,
  read: "^[a-z][a-z0-9_]{0,62}\\.dlq$",
});

const DASHBOARD_QUEUE = `dashboard\\.events\\.[0-${DASHBOARD_EVENT_QUEUES.length - 1}]`;

/**
 * `deno task dashboard`: watches and changes nothing. It receives task
 * events on an exclusive queue of its own (one of
 * {@linkcode DASHBOARD_EVENT_QUEUES}: declared, bound (write on it, read on
 * the events exchange) and consumed), and pings workers through the control
 * exchange, which answer on Direct Reply-to (no permission). It reads no
 * function queue or dead letter, publishes no request, and has no
 * management API tag. Replays go through the operator user.
 *
 * It reads queue depths and consumers by passive declarations, which
 * RabbitMQ 4.3.1 refuses it: any permission on a function's queue would do,
 * but `write` would let it bind that queue to the events exchange it reads,
 * pouring every task event into the function's queue, and `read` or
 * `configure` would let it drain or delete it. So it has none, and on 4.3.1
 * and later shows no depths (docs/dashboard.md).
 */
export const DASHBOARD_PERMISSIONS: Readonly<Permissions> = Object.freeze({
  configure: `^${DASHBOARD_QUEUE}$`,
  write: `^(${DASHBOARD_QUEUE}|${CONTROL})$`,
  read: `^(${DASHBOARD_QUEUE}|${EVENTS})$`,
});

/**
 * The user limits of the least trusted users, whose programs are not the
 * product's: each dashboard holds one connection (its event queue is
 * exclusive to it, so more connections than queues serve nothing), Celery
 * client processes a few each (a producer pool and the result consumer).
 * Guard rails on the broker's connections and channels, which every user
 * shares too.
 */
export const USER_LIMITS: Readonly<Record<string, UserLimits>> = Object.freeze({
  [DASHBOARD_USER]: { "max-connections": DASHBOARD_EVENT_QUEUES.length, "max-channels": 64 },
  [CELERY_CLIENT_USER]: { "max-connections": 200, "max-channels": 2000 },
});

/** A RabbitMQ operator policy: limits on queues that no user's own arguments can raise. */
export interface OperatorPolicy {
  name: string;
  pattern: string;
  "apply-to": "queues";
  priority: number;
  definition: { expires: number; "max-length"?: number; "max-length-bytes"?: number };
}

/**
 * Limits on the queues that clients make and the vhost's budget cannot
 * count by name: each is deleted once unused for
 * {@linkcode CLIENT_QUEUE_EXPIRES_MS} (so queues made and left do not hold
 * the budget for good), and the queues that hostile senders can fill
 * (Celery reply queues, the dashboards' event queues) keep at most so many
 * messages, oldest dropped first. A caller's own reply queue has no length
 * limit: dropping a reply would lose a task's result. A named caller's
 * queue waits longer for its caller (a day), and is capped at what its
 * client lets wait: the client refuses to submit more first, and the queue
 * itself refuses more (`reject-publish`) rather than drop one.
 */
export function operatorPolicies(
  expiresMs: number = CLIENT_QUEUE_EXPIRES_MS,
): OperatorPolicy[] {
  const policy = (
    name: string,
    pattern: string,
    limits: Partial<OperatorPolicy["definition"]> = {},
  ): OperatorPolicy => ({
    name,
    pattern,
    "apply-to": "queues",
    priority: 0,
    definition: { expires: expiresMs, ...limits },
  });
  return [
    policy("celery-replies", `^${CELERY_REPLY_QUEUE}$`, {
      "max-length": 10_000,
      "max-length-bytes": 64 * 1024 * 1024,
    }),
    policy("caller-replies", `^${REPLIES}$`),
    // A named caller's queue holds its calls' records and results until it
    // collects them: it may wait a day for its caller, and holds at most
    // what the client lets wait (two messages per outstanding call).
    policy("named-replies", `^replies\\.named\\.`, {
      expires: NAMED_REPLY_QUEUE_MAX_IDLE_MS,
      "max-length": NAMED_REPLY_QUEUE_MAX_LENGTH,
      "max-length-bytes": NAMED_REPLY_QUEUE_MAX_BYTES,
    }),
    policy("dashboard-events", `^${DASHBOARD_QUEUE}$`, {
      "max-length": 10_000,
      "max-length-bytes": 16 * 1024 * 1024,
    }),
  ];
}

const SCHEDULE = SCHEDULE_EXCHANGE.replaceAll(".", "\\.");
const SCHEDULER_STATE = SCHEDULER_QUEUE.replaceAll(".", "\\.");

/**
 * `deno task scheduler` (docs/schedules.md): fires ticks through the
 * schedule exchange only, never the default exchange, so it reaches no
 * queue but those bound there; and only the queues of the functions the
 * registry schedules (`queues`) may it bind there (write on a queue), from
 * the one exchange it may read. Its replicas share one queue, the
 * single-active-consumer `tasks.scheduler` holding the schedule's state,
 * which it declares, binds to the schedule exchange and consumes; it tells
 * dashboards which replica fires through the events exchange (write on
 * it): nothing else. No other user but the administrator may write to the
 * schedule exchange, which is what lets a worker take a request that came
 * through it as the scheduler's (runtime/worker/protocol.ts).
 */
export function schedulerPermissions(queues: readonly string[]): Permissions {
  queues.forEach(checkQueue);
  const bound = queues.length === 0 ? "" : `|${[...new Set(queues)].sort().join("|")}`;
  return {
    configure: `^${SCHEDULER_STATE}$`,
    write: `^(${SCHEDULE}|${SCHEDULER_STATE}|${EVENTS}${bound})$`,
    read: `^(${SCHEDULE}|${SCHEDULER_STATE})$`,
  };
}

/** The administrator: everything, and the management UI. */
export const ADMIN_PERMISSIONS: Readonly<Permissions> = Object.freeze({
  configure: ".*",
  write: ".*",
  read: ".*",
});

/** RabbitMQ's definitions format, as much of it as this file sets. */
export interface Definitions {
  users: {
    name: string;
    password_hash: string;
    hashing_algorithm: string;
    tags: string[];
    limits?: UserLimits;
  }[];
  vhosts: { name: string }[];
  parameters: (
    | { vhost: string; component: "vhost-limits"; name: "limits"; value: { "max-queues": number } }
    | {
      vhost: string;
      component: "operator_policy";
      name: string;
      value: Omit<OperatorPolicy, "name">;
    }
  )[];
  permissions: ({ user: string; vhost: string } & Permissions)[];
  topic_permissions: ({ user: string; vhost: string } & TopicPermission)[];
  exchanges: {
    name: string;
    vhost: string;
    type: string;
    durable: boolean;
    auto_delete: boolean;
    internal: boolean;
    arguments: Record<string, never>;
  }[];
  queues: {
    name: string;
    vhost: string;
    durable: boolean;
    auto_delete: boolean;
    arguments: Record<string, unknown>;
  }[];
}

/** Options for {@linkcode buildDefinitions}. */
export interface BuildDefinitionsOptions {
  /** @default {"/"} */
  vhost?: string;
  /** See {@linkcode operatorPolicies}; shorter in tests. @default {CLIENT_QUEUE_EXPIRES_MS} */
  clientQueueExpiresMs?: number;
}

/**
 * The definitions for `users` on the vhost `/`: their permissions and
 * limits, the vhost's queue budget and operator policies, the control and
 * events exchanges, and the stream of cancellations (which no worker or
 * caller of the stack may declare itself). The broker creates no default user (guest) when it
 * loads definitions at start, so these are all the users it has (see
 * {@linkcode GUEST_USER}).
 */
export function buildDefinitions(
  users: readonly User[],
  options: BuildDefinitionsOptions = {},
): Definitions {
  const vhost = options.vhost ?? "/";
  return {
    users: users.map((user) => ({
      name: user.name,
      password_hash: user.passwordHash,
      hashing_algorithm: HASHING_ALGORITHM,
      tags: user.tags,
      ...(user.limits ? { limits: { ...user.limits } } : {}),
    })),
    vhosts: [{ name: vhost }],
    parameters: [
      {
        vhost,
        component: "vhost-limits",
        name: "limits",
        value: { "max-queues": MAX_QUEUES },
      },
      ...operatorPolicies(options.clientQueueExpiresMs).map(({ name, ...value }) => ({
        vhost,
        component: "operator_policy" as const,
        name,
        value,
      })),
    ],
    permissions: users.flatMap((user) =>
      user.permissions ? [{ user: user.name, vhost, ...user.permissions }] : []
    ),
    topic_permissions: users.flatMap((user) =>
      user.topicPermission ? [{ user: user.name, vhost, ...user.topicPermission }] : []
    ),
    exchanges: [
      [CONTROL_EXCHANGE, "fanout"],
      [EVENTS_EXCHANGE, "fanout"],
      [CLOUD_EVENTS_EXCHANGE, "topic"],
      [SCHEDULE_EXCHANGE, "direct"],
    ].map(([name, type]) => ({
      name,
      vhost,
      type,
      durable: true,
      auto_delete: false,
      internal: false,
      arguments: {},
    })),
    queues: [
      [CANCELLATIONS_STREAM, CANCELLATIONS_STREAM_ARGUMENTS] as const,
      [GATEWAY_CALLS_STREAM, GATEWAY_CALLS_STREAM_ARGUMENTS] as const,
    ].map(([name, args]) => ({
      name,
      vhost,
      durable: true,
      auto_delete: false,
      arguments: { ...args },
    })),
  };
}
