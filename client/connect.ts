/**
 * `connect()`: the one call that gives a program a client of the functions.
 * It finds the functions (the `functions` option, else the function
 * registry), opens the broker the way the command-line tools do
 * (`open_broker.ts`), and returns a {@linkcode TaskClient} that owns the
 * connection.
 *
 * @module
 */

import type { BrokerSettingNames, BrokerSettings, ConnectionEvent } from "../core/broker/mod.ts";
import type { Message } from "../core/contract/mod.ts";
import type { LogLevel } from "../core/log.ts";
import {
  DEFAULT_REGISTRY,
  type FunctionRoute,
  type FunctionsOption,
  loadRegistry,
  routeOf,
  routesFrom,
} from "../core/registry.ts";
import { openBroker } from "./open_broker.ts";
import { type ReplyMode, TaskClient } from "./task_client.ts";

/** Options for {@linkcode connect}. Every one is optional. */
export interface ConnectOptions extends BrokerSettings {
  /**
   * Each function to call: its queue, or its queue and the broker user its
   * workers run as (default: the function's name). Replies are accepted
   * only from that user or the client's own.
   */
  functions?: FunctionsOption;
  /**
   * The function registry to read the functions from, when `functions` is
   * not given.
   * @default {"functions/registry.yaml", when it exists}
   */
  registry?: string;
  /**
   * Run the functions on the embedded broker, in this process (each
   * sandboxed in a process of its own), with no RabbitMQ. Needs
   * `--allow-run=deno`.
   * Functions served by Celery workers cannot run there: they are left out.
   * @default {false}
   */
  local?: boolean;
  /**
   * How long a call waits for its reply unless it says otherwise.
   * @default {30000}
   */
  timeoutMs?: number;
  /**
   * The compose stack's user whose password (`secrets/<user>.password`) is
   * used for a broker on this machine when no password is given.
   * @default {"dispatcher"}
   */
  user?: string;
  /** Shown in RabbitMQ's management UI. @default {"client"} */
  connectionName?: string;
  /** Sees every message on the reply queue before any check: for tests that count the wire. */
  onWire?: (message: Message) => void;
  /**
   * Where replies come back: `direct` (Direct Reply-to, lost with the node
   * the client is on), `queue` (a quorum reply queue of the client's own,
   * which outlives any one node of a cluster), or `auto`: `queue` when `url`
   * lists several nodes, else `direct`. See docs/cluster.md.
   * @default {"auto"}
   */
  replies?: ReplyMode | "auto";
  /**
   * Connect again (to the next node of a cluster) when the connection is
   * lost, and carry on with the calls in flight.
   * @default {true}
   */
  reconnect?: boolean;
  /** Told when the connection is lost, retried, regained or given up. */
  onConnectionEvent?: (event: ConnectionEvent) => void;
  /**
   * Reads an environment variable (AMQP_URL, AMQP_URL_FILE,
   * AMQP_PASSWORD_FILE, AMQP_*_FILE, SECRETS_DIR, TASK_EVENTS).
   * @default {Deno.env.get, where this process may read the variable}
   */
  env?: (name: string) => string | undefined;
  /** Level of the embedded workers' log on stderr. @default {"warn"} */
  logLevel?: LogLevel;
  /**
   * Publish a `task-sent` task event for each request, as workers started
   * with `TASK_EVENTS=true` publish theirs (see docs/dashboard.md).
   * @default {TASK_EVENTS is "true"}
   */
  events?: boolean;
  /**
   * A name of the caller's own: replies and the calls it submits wait in a
   * durable queue named from its broker user and this name, which a program
   * that restarts with the same name takes up again (docs/client.md,
   * "Calls that outlive their caller").
   */
  name?: string;
  /** With `name`: a file of the collected outcomes, so that none is collected twice across a crash. */
  journal?: string;
  /** With `name`: how long the queue waits for its caller. @default {1 hour} */
  replyQueueIdleMs?: number;
}

/** How the client names its settings in messages. */
const OPTION_NAMES: BrokerSettingNames = {
  url: "url",
  passwordFile: "passwordFile",
  caFile: "caFile",
  certFile: "certFile",
  keyFile: "keyFile",
};

/** Reads a variable only where allowed: a library must not make Deno prompt. */
function readEnv(name: string): string | undefined {
  const { state } = Deno.permissions.querySync({ name: "env", variable: name });
  return state === "granted" ? Deno.env.get(name) : undefined;
}

async function fileExists(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

async function functionsOf(options: ConnectOptions): Promise<Map<string, FunctionRoute>> {
  if (options.functions) return routesFrom(options.functions);
  let file = options.registry;
  if (file === undefined) {
    if (!(await fileExists(DEFAULT_REGISTRY))) return new Map();
    file = DEFAULT_REGISTRY;
  }
  const { functions } = await loadRegistry(file);
  return new Map([...functions].map(([name, entry]) => [name, routeOf(entry)]));
}

/** The functions that run on the embedded broker: not those Celery workers serve. */
function embeddable(functions: Map<string, FunctionRoute>): Map<string, FunctionRoute> {
  return new Map([...functions].filter(([, route]) => route.protocol !== "celery"));
}

/**
 * Connects to the broker and returns a client of the functions. The broker
 * is found as the command-line tools find it: `url` (or `AMQP_URL`,
 * `AMQP_URL_FILE`), else the compose stack's dispatcher on localhost when
 * its password file exists, else `amqp://guest:guest@localhost:5672`.
 *
 * Throws a `ConfigError` or `SecretFileError` for settings or a
 * configuration it cannot use, and a `BrokerUnavailableError` when the
 * broker does not answer or refuses the credentials.
 */
export async function connect(options: ConnectOptions = {}): Promise<TaskClient> {
  const all = await functionsOf(options);
  // Asked for by name, a Celery function still fails on the embedded broker, saying why.
  const functions = options.local && !options.functions ? embeddable(all) : all;
  const env = options.env ?? readEnv;
  const opened = await openBroker({
    settings: options,
    names: OPTION_NAMES,
    env,
    user: options.user,
    local: options.local,
    functions: [...functions].map(([task, { queue, protocol }]) => ({ task, queue, protocol })),
    embeddedOptions: { logLevel: options.logLevel ?? "warn" },
    connectionName: options.connectionName ?? "client",
    reconnect: options.reconnect ?? true,
    replies: options.replies,
    onConnectionEvent: options.onConnectionEvent,
  });
  try {
    return await TaskClient.open(opened.broker, {
      functions,
      label: opened.label,
      timeoutMs: options.timeoutMs,
      onWire: options.onWire,
      replies: opened.replies,
      onClose: () => opened.close(),
      events: options.events ?? env("TASK_EVENTS") === "true",
      name: options.name,
      journal: options.journal,
      replyQueueIdleMs: options.replyQueueIdleMs,
    });
  } catch (error) {
    await opened.close();
    throw error;
  }
}
