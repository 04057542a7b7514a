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
import { BROKER_FLAG_NAMES } from "../dispatcher/cli/options.ts";

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
