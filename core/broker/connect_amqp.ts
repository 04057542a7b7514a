/**
 * Opening a connection to RabbitMQ: one URL, or several nodes of a cluster
 * tried in turn, within a deadline, with failures turned into messages that
 * say what to fix.
 *
 * @module
 */

import amqp from "amqplib";
import type { ChannelModel } from "amqplib";
import type { Broker } from "./broker.ts";
import { BrokerUnavailableError } from "./broker.ts";
import { AmqpBroker } from "./amqp_broker.ts";
import { type AmqpSettingNames, type AmqpTls, splitAmqpUrls, userOfUrl } from "./amqp_url.ts";
import { describeConnectError } from "./describe_connect_error.ts";

/** Options for {@linkcode connectAmqp}. */
export interface ConnectAmqpOptions {
  /**
   * Give up on a node that has not completed the handshake within this time.
   * @default {5000}
   */
  timeoutMs?: number;
  /** Shown in RabbitMQ's management UI, to tell connections apart. */
  connectionName?: string;
  /**
   * Seconds between heartbeats; a broker silent for two of them is gone.
   * @default {10}
   */
  heartbeatSeconds?: number;
  /**
   * Certificates for an `amqps://` URL: the CA that signs the broker's
   * certificate (else the system's CAs) and a client certificate and key for
   * brokers that ask for one.
   */
  tls?: AmqpTls;
  /**
   * How the caller names its TLS settings, for the fixes in error messages.
   * @default {WORKER_SETTING_NAMES}
   */
  settingNames?: AmqpSettingNames;
  /**
   * The node of a list to try first, for callers that rotate through a
   * cluster after losing a node.
   * @default {0}
   */
  startAt?: number;
}

// Nodes of a list are tried from where the last connection of this process
// succeeded, so that a reconnection after losing a node tries the others first.
let preferred = 0;

/**
 * Connects to RabbitMQ at `urls`: one URL, or a comma-separated list of the
 * nodes of one cluster, tried in turn (each within `timeoutMs`) until one
 * answers. Fails with a {@linkcode BrokerUnavailableError} that says what to
 * fix; a URL that is not an AMQP URL fails at once with a `TypeError`.
 */
export async function connectAmqp(urls: string, options: ConnectAmqpOptions = {}): Promise<Broker> {
  const list = splitAmqpUrls(urls, "the broker URL");
  const start = options.startAt ?? preferred;
  let failure: BrokerUnavailableError | undefined;
  let unreachable = true;
  for (let i = 0; i < list.length; i++) {
    const index = (start + i) % list.length;
    try {
      const broker = await connectOne(list[index], options);
      preferred = index;
      return broker;
    } catch (error) {
      if (!(error instanceof BrokerUnavailableError)) throw error;
      // A node that refused (credentials, TLS) speaks for the whole cluster.
      if (!error.unreachable) throw error;
      failure = error;
      unreachable &&= error.unreachable;
      if (list.length > 1) preferred = (index + 1) % list.length;
    }
  }
  if (list.length === 1) throw failure!;
  throw new BrokerUnavailableError(
    `Cannot connect to any of the ${list.length} brokers (${
      failure!.message
    }): start one, or fix the list`,
    { cause: failure, unreachable },
  );
}

async function connectOne(url: string, options: ConnectAmqpOptions): Promise<Broker> {
  const timeoutMs = options.timeoutMs ?? 5000;
  const { tls } = options;
  const describe = (error: unknown) =>
    describeConnectError(error, url, { timeoutMs, tls, names: options.settingNames });
  const connectOptions = {
    // Nagle's algorithm delays small frames by tens of milliseconds.
    noDelay: true,
    timeout: timeoutMs,
    clientProperties: { connection_name: options.connectionName ?? "deno-task-system" },
    // The credentials travel apart from the URL, decoded here: amqplib would
    // decode a percent-encoded password as Latin-1.
    ...credentialsOf(url),
    ...(tls?.ca && { ca: [tls.ca.pem] }),
    ...(tls?.cert && { cert: tls.cert.pem }),
    ...(tls?.key && { key: tls.key.pem }),
  };
  const target = withoutCredentials(withHeartbeat(url, options.heartbeatSeconds ?? 10));
  let timer: ReturnType<typeof setTimeout> | undefined;
  const attempt = amqp.connect(target, connectOptions);
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error("timed out")), timeoutMs);
  });
  let connection: ChannelModel;
  try {
    connection = await Promise.race([attempt, timeout]);
  } catch (error) {
    // A connection that completes after the timeout must not linger.
    attempt.then((late) => late.close()).catch(() => {});
    const failure = describe(error);
    throw new BrokerUnavailableError(failure.message, {
      cause: error,
      unreachable: failure.unreachable,
    });
  } finally {
    clearTimeout(timer);
  }
  try {
    const channel = await connection.createConfirmChannel();
    return new AmqpBroker(connection, channel, url, userOfUrl(url));
  } catch (error) {
    await connection.close().catch(() => {});
    throw new BrokerUnavailableError(describe(error).message, { cause: error });
  }
}

function credentialsOf(url: string): { credentials?: ReturnType<typeof amqp.credentials.plain> } {
  const { username, password } = new URL(url);
  if (!username && !password) return {};
  return {
    credentials: amqp.credentials.plain(decodeURIComponent(username), decodeURIComponent(password)),
  };
}

function withoutCredentials(url: string): string {
  const parsed = new URL(url);
  parsed.username = "";
  parsed.password = "";
  return parsed.toString();
}

function withHeartbeat(url: string, seconds: number): string {
  const parsed = new URL(url);
  if (!parsed.searchParams.has("heartbeat")) parsed.searchParams.set("heartbeat", String(seconds));
  return parsed.toString();
}
