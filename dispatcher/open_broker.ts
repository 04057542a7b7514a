/**
 * Opens the broker of a run from a tool's flags and environment: resolves
 * the URL and its credentials (`resolve_broker.ts`), connects, or falls back
 * to the embedded broker (`choose_broker.ts`). Shared by `deno task dispatch`
 * and `deno task load`.
 *
 * @module
 */

import { SecretFileError } from "../functions/_runtime/broker/secret_file.ts";
import { type BrokerChoice, chooseBroker } from "./choose_broker.ts";
import { EXIT } from "./cli.ts";
import { connectRabbitMq } from "./connect_rabbitmq.ts";
import {
  type EmbeddedFunction,
  startEmbedded,
  type StartEmbeddedOptions,
} from "../functions/_runtime/embedded.ts";
import { type BrokerFlags, resolveBroker } from "./resolve_broker.ts";

/** Options for {@linkcode openBroker}. */
export interface OpenBrokerOptions {
  /** `--local`: the embedded broker, whatever else is set. */
  local: boolean;
  flags: BrokerFlags;
  env: (name: string) => string | undefined;
  /** The functions the embedded broker must run, if it comes to that. */
  functions: EmbeddedFunction[];
  /** Shown in RabbitMQ's management UI. */
  connectionName?: string;
  embeddedOptions?: StartEmbeddedOptions;
}

/** The broker of a run, and where its password came from. */
export interface OpenedBroker extends BrokerChoice {
  /** The password file used, if any. */
  passwordFile?: string;
}

/** Opens the broker of a run; see the module documentation. */
export async function openBroker(options: OpenBrokerOptions): Promise<OpenedBroker> {
  const target = options.local ? undefined : await resolveBroker(options.flags, {
    env: options.env,
    root: new URL("../", import.meta.url),
  });
  const choice = await chooseBroker({
    local: options.local,
    url: target?.explicit ? target.url : undefined,
    defaultUrl: target?.url,
    functions: options.functions,
    connect: (url, timeoutMs) =>
      connectRabbitMq(url, timeoutMs, {
        tls: target?.tls,
        connectionName: options.connectionName,
      }),
    startEmbedded,
    embeddedOptions: options.embeddedOptions,
  });
  return { ...choice, passwordFile: choice.embedded ? undefined : target?.passwordFile };
}

/** How a run reports its broker: where it is, and where its password came from. */
export function brokerLabel(opened: OpenedBroker): string {
  return opened.passwordFile
    ? `${opened.label} (password from ${opened.passwordFile})`
    : opened.label;
}

/** The exit code for a failure to open the broker: bad settings are usage errors. */
export function openFailureCode(error: unknown): number {
  return error instanceof TypeError || error instanceof SecretFileError
    ? EXIT.usage
    : EXIT.unavailable;
}
