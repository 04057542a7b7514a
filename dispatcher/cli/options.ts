/**
 * Reading the command line: strict flags, the usage error every tool exits
 * 2 on, numbers, and the broker options every tool shares, with one help
 * text, so that `--broker`, `--password-file` and the TLS files mean the
 * same everywhere.
 *
 * @module
 */

import { parseArgs, type ParseArgsConfig } from "node:util";
import { parseWholeNumber, wholeNumberRange } from "../../core/whole_number.ts";
import type { BrokerSettingNames, BrokerSettings } from "../../core/broker/mod.ts";

/** `--json` (one JSON document on stdout instead of text) and `--help`: every tool has both. */
export const JSON_HELP_OPTIONS = {
  json: { type: "boolean", default: false },
  help: { type: "boolean", short: "h", default: false },
} as const;

/**
 * The options of a command that writes a results document: where to save
 * it (`--out`), not to (`--no-save`), to print it (`--json`), and `--help`.
 */
export const DOCUMENT_OPTIONS = {
  out: { type: "string" },
  "no-save": { type: "boolean", default: false },
  ...JSON_HELP_OPTIONS,
} as const;

/** `--config`: the file a tool reads the functions (and scenarios) from. */
export const CONFIG_OPTION = { config: { type: "string", default: "test-config.yml" } } as const;

/** A bad option or argument: the tool exits 2. */
export class UsageError extends Error {
  /** @param message What was wrong and what to give instead. */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Option definitions, as `node:util` `parseArgs` takes them. */
export type OptionsConfig = NonNullable<ParseArgsConfig["options"]>;

/** The values of options `O` after parsing. */
export type OptionValues<O extends OptionsConfig> = ReturnType<
  typeof parseArgs<{ args: string[]; options: O; strict: true; allowPositionals: false }>
>["values"];

/** Parses a tool's flags strictly; an unknown or malformed one is a {@linkcode UsageError}. */
export function readOptions<const O extends OptionsConfig>(
  args: string[],
  options: O,
  tool: string,
): OptionValues<O> {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values;
  } catch (error) {
    throw new UsageError(
      `Cannot read the options: ${(error as Error).message}. See 'deno task ${tool} --help'`,
    );
  }
}

/** Reads a flag's whole number, at least `min`; `fallback` when the flag is absent. */
export function wholeNumberFlag(
  text: string | undefined,
  flag: string,
  fallback: number,
  min = 1,
  max?: number,
): number {
  if (text === undefined) return fallback;
  const value = parseWholeNumber(text, min, max);
  if (value === undefined) {
    throw new UsageError(
      `Cannot use ${flag} '${text}': give a whole number ${wholeNumberRange(min, max)}`,
    );
  }
  return value;
}

/** Reads a flag's number greater than 0; `undefined` when the flag is absent. */
export function positiveNumberFlag(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const number = Number(value);
  if (value.trim() === "" || !Number.isFinite(number) || number <= 0) {
    throw new UsageError(`Cannot use ${flag} '${value}': give a number greater than 0`);
  }
  return number;
}

/** Option definitions of the broker options. */
export const BROKER_OPTIONS = {
  broker: { type: "string" },
  "password-file": { type: "string" },
  "ca-file": { type: "string" },
  "cert-file": { type: "string" },
  "key-file": { type: "string" },
} as const;

/** The names of {@linkcode BROKER_OPTIONS}. */
const BROKER_FLAGS = Object.keys(BROKER_OPTIONS) as (keyof typeof BROKER_OPTIONS)[];

/** How the broker settings of {@linkcode brokerSettings} are named in messages. */
export const BROKER_FLAG_NAMES: Readonly<BrokerSettingNames> = Object.freeze({
  url: "--broker",
  passwordFile: "--password-file",
  caFile: "--ca-file",
  certFile: "--cert-file",
  keyFile: "--key-file",
});

/** Help lines for the broker options of a tool that connects as `user` in the compose stack. */
export function brokerHelp(user: string): string {
  return `  --broker URL         RabbitMQ URL, e.g. amqp://${user}@localhost:5672, or
                       several nodes of one cluster separated by commas
                       (default: $AMQP_URL or the URL in $AMQP_URL_FILE; with
                       none, amqp://${user}@localhost:5672 when the compose
                       stack's secrets/${user}.password exists, else
                       amqp://guest:guest@localhost:5672)
  --password-file PATH file holding the password of the URL's user (default:
                       $AMQP_PASSWORD_FILE; for the user ${user} on localhost,
                       127.0.0.1 or ::1 only, the compose stack's, in
                       $SECRETS_DIR or secrets/)
  --ca-file PATH       amqps://: CA certificate (PEM) that signs the broker's
                       certificate (default: $AMQP_CA_FILE, else the system's)
  --cert-file PATH     amqps://: client certificate (PEM), for brokers that ask
                       for one (default: $AMQP_CERT_FILE); with --key-file
  --key-file PATH      its private key (default: $AMQP_KEY_FILE)`;
}

/** The broker settings among a tool's parsed options. */
export function brokerSettings(
  values: Partial<Record<keyof typeof BROKER_OPTIONS, string>>,
): BrokerSettings {
  return {
    url: values.broker,
    passwordFile: values["password-file"],
    caFile: values["ca-file"],
    certFile: values["cert-file"],
    keyFile: values["key-file"],
  };
}

/** The `--replies` option of the tools that call functions. */
export const REPLIES_OPTION = { replies: { type: "string", default: "auto" } } as const;

/** Help lines of {@linkcode REPLIES_OPTION}. */
export const REPLIES_HELP =
  `  --replies MODE       where replies come back: direct (Direct Reply-to, lost
                       with the node the caller is on), queue (a quorum queue
                       of the caller's own, which outlives any one node), or
                       auto: queue when --broker lists several nodes, else
                       direct (default: auto; see docs/cluster.md)`;

/** Reads `--replies`; a {@linkcode UsageError} naming the choices for anything else. */
export function repliesFlag(value: string): "direct" | "queue" | "auto" {
  if (value === "direct" || value === "queue" || value === "auto") return value;
  throw new UsageError(`Cannot use --replies '${value}': use direct, queue or auto`);
}

/** Refuses `--local` together with a broker option: the embedded broker needs none. */
export function checkLocal(values: Record<string, unknown>): void {
  if (!values.local) return;
  for (const flag of BROKER_FLAGS) {
    if (values[flag] !== undefined) {
      throw new UsageError(`Cannot use --local with --${flag}: the embedded broker needs neither`);
    }
  }
}
