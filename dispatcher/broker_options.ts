/**
 * The broker options every command-line tool takes, with one help text, so
 * that `--broker`, `--password-file` and the TLS files mean the same
 * everywhere.
 *
 * @module
 */

import type { BrokerFlags } from "./resolve_broker.ts";

/** Option definitions for `readOptions`. */
export const BROKER_OPTIONS = {
  broker: { type: "string" },
  "password-file": { type: "string" },
  "ca-file": { type: "string" },
  "cert-file": { type: "string" },
  "key-file": { type: "string" },
} as const;

/** The names of {@linkcode BROKER_OPTIONS}. */
export const BROKER_FLAGS = Object.keys(BROKER_OPTIONS) as (keyof typeof BROKER_OPTIONS)[];

/** Help lines for the broker options of a tool that connects as `user`. */
export function brokerHelp(user: string): string {
  return `  --broker URL         RabbitMQ URL, e.g. amqp://${user}@localhost:5672 (default:
                       $AMQP_URL or the URL in $AMQP_URL_FILE; with none,
                       amqp://${user}@localhost:5672 when the compose stack's
                       secrets/${user}.password exists, else
                       amqp://guest:guest@localhost:5672)
  --password-file PATH file holding the password of the URL's user (default:
                       $AMQP_PASSWORD_FILE; for the user ${user}, the compose
                       stack's, in $SECRETS_DIR or secrets/)
  --ca-file PATH       amqps://: CA certificate (PEM) that signs the broker's
                       certificate (default: $AMQP_CA_FILE, else the system's)
  --cert-file PATH     amqps://: client certificate (PEM), for brokers that ask
                       for one (default: $AMQP_CERT_FILE); with --key-file
  --key-file PATH      its private key (default: $AMQP_KEY_FILE)`;
}

/** The broker flags among a tool's parsed options. */
export function brokerFlags(
  values: Partial<Record<keyof typeof BROKER_OPTIONS, string>>,
): BrokerFlags {
  return {
    broker: values.broker,
    passwordFile: values["password-file"],
    caFile: values["ca-file"],
    certFile: values["cert-file"],
    keyFile: values["key-file"],
  };
}
