/**
 * Opening a connection to RabbitMQ: one URL, or several nodes of a cluster
 * tried in turn, within a deadline, with failures turned into messages that
 * say what to fix.
 *
 * @module
 */

import amqp from "amqplib";
import type { ChannelModel } from "amqplib";
import { type Broker, BrokerUnavailableError, type ConnectorOptions } from "../broker.ts";
import { splitUrls, userOfUrl } from "../url.ts";
import { AmqpBroker } from "./amqp_broker.ts";
import { describeConnectError } from "./describe_connect_error.ts";

/** Options for {@linkcode connectAmqp}. */
export interface ConnectAmqpOptions extends ConnectorOptions {
  /**
   * The node of a list to try first, for callers that rotate through a
   * cluster after losing a node.
   * @default {the node of the last connection that succeeded}
   */
  startAt?: number;
}

// Nodes of a list are tried from where the last connection of this process
// succeeded, so that a reconnection after losing a node tries the others first.
let preferred = 0;

/**
 * Connects to RabbitMQ at `urls`: one URL, or a comma-separated list of the
 * nodes of one cluster, tried in turn (each within `timeoutMs`) until one
 * answers: the connector of `amqp:` and `amqps:` URLs. Fails with a
 * {@linkcode BrokerUnavailableError} that says what to fix.
 */
export async function connectAmqp(urls: string, options: ConnectAmqpOptions = {}): Promise<Broker> {
  const list = splitUrls(urls);
  if (list.length === 0) {
    throw new TypeError(
      "Cannot connect to RabbitMQ as no URL was given: give amqp://user@host:5672",
    );
  }
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
