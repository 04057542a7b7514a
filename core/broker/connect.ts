/**
 * The one way to open a broker: {@linkcode connect} picks the adapter by the
 * URL's scheme (`amqp:` and `amqps:` RabbitMQ through amqplib, `memory:` an
 * in-process broker of this process), retries while nothing answers if the
 * caller can wait, and, when asked, returns a broker that connects again
 * after losing its node (`reconnecting.ts`).
 *
 * Adding a backend: a folder beside `amqp/` and `memory/` whose connector
 * (a {@linkcode Connector}) opens its `Broker`, a row in `ADAPTERS` below,
 * and its case in tests/broker_conformance_test.ts. Nothing outside this
 * folder names an adapter.
 *
 * @module
 */

import { ConfigError } from "../config_error.ts";
import {
  type Broker,
  type BrokerTls,
  BrokerUnavailableError,
  type Connector,
  type ConnectorOptions,
  type TlsSettingNames,
} from "./broker.ts";
import { type ConnectionEvent, ReconnectingBroker } from "./reconnecting.ts";
import { maskUrl } from "./url.ts";

/** A backend: whether its connections are encrypted, and its connector, loaded when first used. */
interface Adapter {
  encrypted: boolean;
  load(): Promise<Connector>;
}

const amqp = async () => (await import("./amqp/connect_amqp.ts")).connectAmqp;

/** Every backend, by URL scheme. */
const ADAPTERS: Readonly<Record<string, Adapter>> = Object.freeze({
  "amqp:": { encrypted: false, load: amqp },
  "amqps:": { encrypted: true, load: amqp },
  "memory:": {
    encrypted: false,
    load: async () => (await import("./memory/memory_broker.ts")).connectMemory,
  },
});

/** The schemes, as a fix names them: `amqp://, amqps:// or memory://`. */
function schemeList(): string {
  const schemes = Object.keys(ADAPTERS).map((scheme) => `${scheme}//`);
  return `${schemes.slice(0, -1).join(", ")} or ${schemes.at(-1)}`;
}

/**
 * Throws a {@linkcode ConfigError} naming the fix when `url` is not the URL
 * of a backend, named by `setting` (such as `AMQP_URL` or `--broker`).
 */
export function checkBrokerUrl(url: string, setting: string): URL {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ConfigError(
      `Cannot use ${setting} as '${maskUrl(url)}' is not a URL: use amqp://user@host:5672`,
    );
  }
  if (!Object.hasOwn(ADAPTERS, parsed.protocol)) {
    throw new ConfigError(
      `Cannot use ${setting} as '${maskUrl(url)}' uses '${parsed.protocol}': use ${schemeList()}`,
    );
  }
  if (!parsed.hostname) {
    throw new ConfigError(
      `Cannot use ${setting} as '${maskUrl(url)}' names no host: use amqp://user@host:5672`,
    );
  }
  return parsed;
}

/** Whether connections to `url` are encrypted, so that TLS files mean something. */
export function encrypts(url: string): boolean {
  return ADAPTERS[new URL(url).protocol]?.encrypted ?? false;
}

/** Where to connect: a resolved `BrokerTarget` is one. */
export interface ConnectTarget {
  /** One URL, or the nodes of one cluster separated by commas, passwords included. */
  url: string;
  tls?: BrokerTls;
  /** How the caller names its TLS settings, for the fixes of a failed connection. */
  names?: TlsSettingNames;
}

/** Options for {@linkcode connect}. */
export interface ConnectOptions {
  /** Shown in the broker's management UI. */
  connectionName?: string;
  /**
   * Keep trying for this long while nothing answers (a broker that is still
   * starting); a refusal (credentials, a certificate) ends at once. 0: one
   * attempt, for a caller with a retry loop of its own.
   * @default {0}
   */
  waitMs?: number;
  /**
   * How long one attempt has for a node's handshake, with `waitMs` 0.
   * @default {5000}
   */
  timeoutMs?: number;
  /** @default {10} */
  heartbeatSeconds?: number;
  /**
   * Connect again, to the next node of a cluster, when the connection is
   * lost, and carry on (see `reconnecting.ts`).
   * @default {false}
   */
  reconnect?: boolean;
  /** Told when a reconnecting connection is lost, retried, regained or given up. */
  onConnectionEvent?: (event: ConnectionEvent) => void;
  /** Opens one connection; for tests that stand in for a broker. @default {the scheme's adapter} */
  connector?: Connector;
}

/**
 * Connects to the broker at `target`; see the module documentation. Fails
 * with a `BrokerUnavailableError` (`unreachable` when nothing answered), or
 * a `ConfigError` for a URL no adapter takes.
 */
export async function connect(
  target: ConnectTarget,
  options: ConnectOptions = {},
): Promise<Broker> {
  const first = target.url.split(",")[0].trim();
  const connector = options.connector ??
    await ADAPTERS[checkBrokerUrl(first, "the broker URL").protocol].load();
  const settings = (timeoutMs: number | undefined): ConnectorOptions => ({
    timeoutMs,
    connectionName: options.connectionName,
    heartbeatSeconds: options.heartbeatSeconds,
    tls: target.tls,
    settingNames: target.names,
  });
  const waitMs = options.waitMs ?? 0;
  const deadline = Date.now() + waitMs;
  let broker: Broker;
  while (true) {
    try {
      broker = await connector(
        target.url,
        settings(waitMs > 0 ? Math.max(100, deadline - Date.now()) : options.timeoutMs),
      );
      break;
    } catch (error) {
      const again = error instanceof BrokerUnavailableError && error.unreachable &&
        deadline - Date.now() > 1000;
      if (!again) throw error;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
  if (!options.reconnect) return broker;
  // Each attempt tries every node of the list once; the backoff between
  // attempts is the reconnecting broker's.
  return new ReconnectingBroker(broker, {
    connect: () => connector(target.url, settings(5000)),
    onEvent: options.onConnectionEvent,
  });
}
