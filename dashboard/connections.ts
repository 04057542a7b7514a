/**
 * The dashboard's two broker connections. It watches as its own `dashboard`
 * user, found as every tool finds its broker (`--broker`, `AMQP_URL`, else
 * the compose stack's `dashboard` on localhost with `secrets/dashboard.password`,
 * else guest on localhost). Dead letters are read and replayed as `operator`:
 * `--operator-broker` and `--operator-password-file` when given, else the
 * dashboard's broker with the user `operator`, whose password on localhost
 * is the compose stack's `secrets/operator.password`. A URL that carries its
 * own password (such as guest:guest on a bare RabbitMQ) serves both.
 *
 * The watch reconnects whenever its connection ends, every few seconds,
 * and the page says what it is waiting for.
 *
 * @module
 */

import {
  type Broker,
  type BrokerSettings,
  type BrokerTarget,
  BrokerUnavailableError,
  connect,
  type Connector,
  resolveBrokerTarget,
} from "../core/broker/mod.ts";
import { DASHBOARD_USER, OPERATOR_USER } from "../core/contract/users.ts";
import type { FunctionRoute } from "../core/registry.ts";
import { BROKER_FLAG_NAMES } from "../dispatcher/cli/options.ts";
import { startBrokerWatch } from "./broker_watch.ts";
import type { DashboardState } from "./dashboard_state.ts";

/** Variables that name the dashboard's own connection, never the operator's. */
const OWN_VARIABLES = new Set(["AMQP_URL", "AMQP_URL_FILE", "AMQP_PASSWORD_FILE"]);

/** Settings of both connections. */
export interface ConnectionSettings {
  dashboard: BrokerSettings;
  /** Only `url` and `passwordFile` are the operator's own; TLS files are shared. */
  operator: { url?: string; passwordFile?: string };
  env: (name: string) => string | undefined;
  /** Opens one connection; for tests. */
  connect?: Connector;
}

/** Where the dashboard watches from. */
export function resolveDashboardTarget(settings: ConnectionSettings): Promise<BrokerTarget> {
  return resolveBrokerTarget({
    settings: settings.dashboard,
    names: BROKER_FLAG_NAMES,
    env: settings.env,
    stackUser: DASHBOARD_USER,
  });
}

/** `urls` (a comma list) without user names and passwords. */
function withoutUser(urls: string): string {
  return urls.split(",").map((url) => {
    const start = url.indexOf("//");
    const at = url.lastIndexOf("@");
    return start !== -1 && at > start ? url.slice(0, start + 2) + url.slice(at + 1) : url;
  }).join(",");
}

/** The operator's URL when none is given: see the module documentation. */
function operatorUrlFor(dashboard: BrokerTarget): string | undefined {
  if (!dashboard.explicit) return undefined;
  // A password in the URL itself: the user chose that account for everything.
  if (dashboard.passwordFile === undefined && /\/\/[^/]*:[^@]*@/.test(dashboard.url)) {
    return dashboard.url;
  }
  return withoutUser(dashboard.url);
}

/** Connects to `target` once: nothing answering is retried within `timeoutMs`. */
export function connectOnce(
  target: BrokerTarget,
  settings: ConnectionSettings,
  connectionName: string,
  timeoutMs = 5000,
): Promise<Broker> {
  return connect(target, {
    connectionName,
    waitMs: timeoutMs,
    heartbeatSeconds: 2,
    connector: settings.connect,
  });
}

/** Opens the operator's connection; fails with what to set when it cannot. */
export async function openOperator(
  settings: ConnectionSettings,
  dashboard: BrokerTarget,
): Promise<Broker> {
  const target = await resolveBrokerTarget({
    settings: {
      ...settings.dashboard,
      url: settings.operator.url ?? operatorUrlFor(dashboard),
      passwordFile: settings.operator.passwordFile,
    },
    names: BROKER_FLAG_NAMES,
    env: (name) => OWN_VARIABLES.has(name) ? undefined : settings.env(name),
    stackUser: OPERATOR_USER,
  });
  try {
    return await connect(target, {
      connectionName: "dashboard-operator",
      waitMs: 5000,
      heartbeatSeconds: 2,
      connector: settings.connect,
    });
  } catch (error) {
    if (!(error instanceof BrokerUnavailableError)) throw error;
    throw new BrokerUnavailableError(
      `${error.message}. Dead letters are read and replayed as ${OPERATOR_USER}: give --operator-broker and --operator-password-file`,
      { cause: error },
    );
  }
}

/** Pause between attempts to reach the broker. */
const RETRY_MS = 3000;

/** What the page says while no RabbitMQ answers at `label`. */
function unreachableNotice(label: string): string {
  return `No RabbitMQ answers at ${label}. Without one, deno task dispatch runs on the embedded broker inside its own process, whose queues, workers, task events and dead letters no other process can see (that run's live status and --html report show them). Start RabbitMQ (docker compose up -d --build) or give --broker: this page connects as soon as it answers.`;
}

/**
 * The watch's first connection. A broker the user named must answer, or
 * this rejects; the default may come later: then it resolves with why the
 * page shows nothing yet.
 */
export async function connectFirst(
  target: BrokerTarget,
  settings: ConnectionSettings,
): Promise<{ broker?: Broker; problem?: string }> {
  try {
    return {
      broker: await connectOnce(target, settings, "dashboard", target.explicit ? 5000 : 1500),
    };
  } catch (error) {
    if (!(error instanceof BrokerUnavailableError) || target.explicit || !error.unreachable) {
      throw error;
    }
    return { problem: unreachableNotice(target.label) };
  }
}

/** What {@linkcode watchBroker} watches with, and whom it tells. */
export interface WatchBrokerOptions {
  settings: ConnectionSettings;
  functions: ReadonlyMap<string, FunctionRoute>;
  /** Where what is seen goes, and what the page says while nothing is. */
  state: DashboardState;
  /** The first connection ({@linkcode connectFirst}), if it opened. */
  broker?: Broker;
  /** Why the first connection did not open, if it did not. */
  problem?: string;
  /** Resolves once the dashboard stops; {@linkcode stopping} is true from then on. */
  stopped: Promise<void>;
  stopping: () => boolean;
  /** Tells the operator (stderr) why the watch cannot start, once per reason in a row. */
  err: (line: string) => void;
}

/**
 * Watches `target` into the state, reconnecting every `RETRY_MS`
 * whenever the connection ends or cannot open, until stopped.
 */
export async function watchBroker(
  target: BrokerTarget,
  options: WatchBrokerOptions,
): Promise<void> {
  const { settings, functions, state, stopped, stopping, err } = options;
  let { broker } = options;
  if (options.problem) state.detach("unavailable", options.problem);
  let told = "";
  while (!stopping()) {
    if (!broker) {
      try {
        broker = await connectOnce(target, settings, "dashboard", RETRY_MS);
      } catch (error) {
        const why = error instanceof BrokerUnavailableError && error.unreachable
          ? unreachableNotice(target.label)
          : (error as Error).message;
        state.detach("unavailable", why);
        await Promise.race([stopped, new Promise((r) => setTimeout(r, RETRY_MS))]);
        continue;
      }
    }
    let watch;
    try {
      watch = await startBrokerWatch(broker, {
        functions,
        onEvent: (event) => state.onEvent(event),
        onScheduler: (note) => state.onScheduler(note),
        onChange: () => state.changed(),
      });
    } catch (error) {
      const why = `Cannot watch the broker as ${broker.user}: ${(error as Error).message}`;
      if (why !== told) err(told = why);
      state.detach("unavailable", why);
      await broker.close().catch(() => {});
      broker = undefined;
      await Promise.race([stopped, new Promise((r) => setTimeout(r, RETRY_MS))]);
      continue;
    }
    state.attach(watch);
    const cause = await Promise.race([broker.closed, stopped.then(() => undefined)]);
    await watch.stop();
    if (stopping()) {
      await broker.close().catch(() => {});
      return;
    }
    state.detach(
      "connecting",
      `The connection to ${target.label} ended${cause ? ` (${cause.message})` : ""}: reconnecting`,
    );
    broker = undefined;
  }
}
