/**
 * How a caller of the functions opens its broker: `deno task dispatch`,
 * `load`, `status`, `dlq`, `bench` and the client library's `connect()`.
 * It resolves the settings and connects through the broker seam
 * (`core/broker/`), and adds what only a caller decides:
 *
 * - `local` runs the embedded broker (each function sandboxed in a process
 *   of its own, which needs `--allow-run=deno`);
 * - an explicit URL must answer, retrying while nothing answers (a broker
 *   that is still starting) until the time is spent;
 * - without a URL, RabbitMQ on localhost is tried, and with `fallback`,
 *   when nothing answers there, the embedded broker runs instead, with a
 *   notice saying so;
 * - which reply path suits the broker: a reply queue of its own for a
 *   cluster (several URLs), Direct Reply-to for one node, unless it says
 *   otherwise (`replies`). With `reconnect`, a RabbitMQ connection outlives
 *   the node it is on.
 *
 * @module
 */

import {
  type Broker,
  type BrokerSettingNames,
  type BrokerSettings,
  type BrokerTarget,
  BrokerUnavailableError,
  connect,
  type ConnectionEvent,
  type Connector,
  resolveBrokerTarget,
} from "../core/broker/mod.ts";
import { ConfigError } from "../core/config_error.ts";
import { DISPATCHER_USER } from "../core/contract/users.ts";
import type { Embedded, EmbeddedFunction, StartEmbeddedOptions } from "../runtime/embedded.ts";
import type { ReplyMode } from "./task_client.ts";

/** Options for {@linkcode openBroker}. */
export interface OpenBrokerOptions {
  /** The caller's broker settings (flags, or the client's options). */
  settings?: BrokerSettings;
  /** How `settings` are named in messages, such as `--broker`. @default {the variables' names} */
  names?: BrokerSettingNames;
  /** Reads an environment variable. @default {nothing: no variable is set} */
  env?: (name: string) => string | undefined;
  /**
   * The compose stack's user this caller connects as: `dispatcher`, or
   * `operator` for the dead-letter tool (see `resolveBrokerTarget`).
   * @default {DISPATCHER_USER}
   */
  user?: string;
  /** Run on the embedded broker, whatever else is set. */
  local?: boolean;
  /**
   * With no URL given, when nothing answers on localhost: run on the
   * embedded broker instead (with a notice), rather than fail.
   * @default {false}
   */
  fallback?: boolean;
  /**
   * The functions the embedded broker must run, if it comes to that. One
   * served by Celery workers cannot run there: the embedded broker is then
   * refused with a `ConfigError` naming it.
   */
  functions?: (EmbeddedFunction & { protocol?: "native" | "celery" })[];
  embeddedOptions?: StartEmbeddedOptions;
  /** Shown in RabbitMQ's management UI. @default {"dispatcher"} */
  connectionName?: string;
  /**
   * How long an explicit broker has to answer.
   * @default {5000}
   */
  timeoutMs?: number;
  /**
   * How long RabbitMQ on localhost has to answer before the fallback.
   * @default {1500}
   */
  probeTimeoutMs?: number;
  /** Opens one connection; for tests. @default {the adapter of the URL's scheme} */
  connect?: Connector;
  /**
   * Connect again, to the next node of a cluster, when the connection is
   * lost, and carry on. `auto`: only with a reply queue, which keeps the
   * replies of the calls in flight; with Direct Reply-to those are lost
   * with the connection, so a run fails at once instead, as it did before
   * clusters.
   * @default {false}
   */
  reconnect?: boolean | "auto";
  /** Told when a reconnecting connection is lost, retried, regained or given up. */
  onConnectionEvent?: (event: ConnectionEvent) => void;
  /**
   * Where replies come back; `auto`: a reply queue of the caller's own when
   * the URL lists several nodes (a cluster), else Direct Reply-to.
   * @default {"auto"}
   */
  replies?: ReplyMode | "auto";
  /** Starts the embedded broker; for tests. @default {startEmbedded} */
  startEmbedded?: (
    functions: EmbeddedFunction[],
    options?: StartEmbeddedOptions,
  ) => Promise<Embedded>;
}

/** An open broker and what a caller says about it. */
export interface OpenedBroker {
  broker: Broker;
  /** Where it is, safe to print (password masked), or the embedded broker. */
  label: string;
  /** The URL, user and password file used; `undefined` on the embedded broker. */
  target?: BrokerTarget;
  /** Set when the run uses the in-process broker. */
  embedded?: Embedded;
  /** Why the run fell back to the embedded broker, to print once. */
  notice?: string;
  /** Where the caller's replies should come back (see `OpenBrokerOptions.replies`). */
  replies: ReplyMode;
  /** Closes the connection, and stops the embedded broker if it runs. */
  close(): Promise<void>;
}

/** The functions of `options` that Celery workers serve, named, if any. */
function celeryFunctions(options: OpenBrokerOptions): string | undefined {
  const celery = (options.functions ?? []).filter((f) => f.protocol === "celery");
  return celery.length > 0 ? celery.map((f) => f.task).join(", ") : undefined;
}

/** How the embedded broker is named in output. */
const EMBEDDED_LABEL =
  "embedded (in-process broker, each function sandboxed in a process of its own)";

/** What a run prints about its broker: where it is, and where its password came from. */
export function describeBroker(opened: OpenedBroker): string {
  const file = opened.target?.passwordFile;
  return file ? `${opened.label} (password from ${file})` : opened.label;
}

async function embed(options: OpenBrokerOptions, notice?: string): Promise<OpenedBroker> {
  const celery = celeryFunctions(options);
  if (celery !== undefined) {
    throw new ConfigError(
      `Cannot run ${celery} on the embedded broker as Celery workers serve ${
        celery.includes(",") ? "them" : "it"
      }: run without --local, on RabbitMQ with its Celery worker running (docker compose --profile celery up -d --build)`,
    );
  }
  const start = options.startEmbedded ??
    (await import("../runtime/embedded.ts")).startEmbedded;
  let embedded: Embedded;
  try {
    // Each with its events, when it has any: the embedded workers bind and chain as any.
    const functions = (options.functions ?? []).map(({ task, queue, triggers, emits }) => ({
      task,
      queue,
      ...(triggers && { triggers }),
      ...(emits && { emits }),
    }));
    embedded = await start(functions, options.embeddedOptions);
  } catch (error) {
    // startEmbedded's contract: a TypeError names a function without a
    // module, a SandboxError a process that may not run deno (or a function
    // that cannot load). Its class lives with the worker internals, so it is
    // known by name.
    if (error instanceof TypeError || (error as Error)?.name === "SandboxError") {
      throw new ConfigError((error as Error).message, { cause: error });
    }
    throw error;
  }
  const broker = embedded.connect();
  return {
    broker,
    label: EMBEDDED_LABEL,
    embedded,
    notice,
    // In one process no connection is ever lost: Direct Reply-to unless asked.
    replies: options.replies === "queue" ? "queue" : "direct",
    async close() {
      await broker.close();
      await embedded.stop();
    },
  };
}

/**
 * Resolves the broker settings of a caller (see `resolveBrokerTarget`);
 * `undefined` with `local`. Throws a `ConfigError` or `SecretFileError`.
 */
export async function resolveTarget(
  options: OpenBrokerOptions = {},
): Promise<BrokerTarget | undefined> {
  if (options.local) return undefined;
  return await resolveBrokerTarget({
    settings: options.settings,
    names: options.names,
    env: options.env,
    stackUser: options.user ?? DISPATCHER_USER,
  });
}

/**
 * Connects to the broker of a resolved `target`, or runs the embedded one;
 * see the module documentation. Fails with a `BrokerUnavailableError`.
 */
export async function connectBroker(
  target: BrokerTarget | undefined,
  options: OpenBrokerOptions = {},
): Promise<OpenedBroker> {
  if (options.local || target === undefined) return await embed(options);
  const several = target.url.split(",").length > 1;
  const replies = options.replies === undefined || options.replies === "auto"
    ? (several ? "queue" : "direct")
    : options.replies;
  const reconnect = options.reconnect === "auto" ? replies === "queue" : options.reconnect === true;
  const open = async (waitMs: number): Promise<OpenedBroker> => {
    const broker = await connect(target, {
      connectionName: options.connectionName ?? "dispatcher",
      waitMs,
      heartbeatSeconds: 2,
      reconnect,
      onConnectionEvent: options.onConnectionEvent,
      connector: options.connect,
    });
    return { broker, label: target.label, target, replies, close: () => broker.close() };
  };
  if (target.explicit || !options.fallback) return await open(options.timeoutMs ?? 5000);
  try {
    return await open(options.probeTimeoutMs ?? 1500);
  } catch (error) {
    if (!(error instanceof BrokerUnavailableError) || !error.unreachable) throw error;
    const celery = celeryFunctions(options);
    if (celery !== undefined) {
      throw new BrokerUnavailableError(
        `Cannot run ${celery} as no broker answered at ${target.label}, and Celery workers need one: start RabbitMQ and the Celery worker (docker compose --profile celery up -d --build), or pass --broker URL`,
        { cause: error, unreachable: true },
      );
    }
    return await embed(
      options,
      `No broker answered at ${target.label}, so this run uses the embedded broker. To run distributed: 'docker compose up -d --build', then run this again (or pass --broker URL).`,
    );
  }
}

/**
 * Opens the broker of a caller: resolves its settings, then connects (see
 * the module documentation). Throws a `ConfigError` or `SecretFileError`
 * for settings it cannot use, and a `BrokerUnavailableError` when the
 * broker does not answer or refuses.
 */
export async function openBroker(options: OpenBrokerOptions = {}): Promise<OpenedBroker> {
  return await connectBroker(await resolveTarget(options), options);
}
