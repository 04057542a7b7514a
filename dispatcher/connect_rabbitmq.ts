/**
 * How the command-line tools connect to RabbitMQ: retrying while nothing
 * answers (a broker that is still starting) until the time is spent, and
 * naming the tools' own TLS options in errors.
 *
 * @module
 */

import { type Broker, BrokerUnavailableError } from "../functions/_runtime/broker/broker.ts";
import type { AmqpTls } from "../functions/_runtime/broker/amqp_target.ts";
import { DISPATCHER_SETTING_NAMES } from "./resolve_broker.ts";

/** Options for {@linkcode connectRabbitMq}. */
export interface ConnectRabbitMqOptions {
  /** Shown in RabbitMQ's management UI. @default {"dispatcher"} */
  connectionName?: string;
  /** CA and client certificate for amqps://. */
  tls?: AmqpTls;
}

/**
 * Connects to RabbitMQ, retrying while nothing answers until `timeoutMs` is
 * spent; other failures (refused credentials, a bad certificate) end at once.
 */
export async function connectRabbitMq(
  url: string,
  timeoutMs: number,
  options: ConnectRabbitMqOptions = {},
): Promise<Broker> {
  const { connectAmqp } = await import("../functions/_runtime/broker/connect_amqp.ts");
  const deadline = Date.now() + timeoutMs;
  while (true) {
    try {
      return await connectAmqp(url, {
        timeoutMs: Math.max(100, deadline - Date.now()),
        heartbeatSeconds: 2,
        connectionName: options.connectionName ?? "dispatcher",
        tls: options.tls,
        settingNames: DISPATCHER_SETTING_NAMES,
      });
    } catch (error) {
      const again = error instanceof BrokerUnavailableError && error.unreachable &&
        deadline - Date.now() > 1000;
      if (!again) throw error;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
}
