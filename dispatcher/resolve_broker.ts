/**
 * Where the dispatcher connects and with which credentials: flags first,
 * then environment variables, then the password that compose.yaml's
 * secrets-init made for the dispatcher. So after `docker compose up -d`,
 * `deno task dispatch` connects as the dispatcher with no option at all.
 *
 * @module
 */

import { LOCAL_AMQP_URL } from "./choose_broker.ts";
import {
  type AmqpSettingNames,
  type AmqpTargetSources,
  type AmqpTls,
  resolveAmqpTarget,
  type Setting,
} from "../functions/_runtime/broker/amqp_target.ts";

/** The dispatcher's user in compose.yaml's broker. */
export const DISPATCHER_USER = "dispatcher";

/** Where the compose stack's broker is looked for without a URL. */
export const STACK_AMQP_URL = `amqp://${DISPATCHER_USER}@localhost:5672`;

/** How the dispatcher names its TLS settings in messages. */
export const DISPATCHER_SETTING_NAMES: AmqpSettingNames = {
  caFile: "--ca-file or AMQP_CA_FILE",
  certFile: "--cert-file or AMQP_CERT_FILE",
  keyFile: "--key-file or AMQP_KEY_FILE",
};

/** The broker options of the command line. */
export interface BrokerFlags {
  broker?: string;
  passwordFile?: string;
  caFile?: string;
  certFile?: string;
  keyFile?: string;
}

/** Options for {@linkcode resolveBroker}. */
export interface ResolveBrokerOptions {
  /** Reads an environment variable. */
  env: (name: string) => string | undefined;
  /** The project's root, against which a relative `SECRETS_DIR` resolves (as in compose.yaml). */
  root: URL;
  /**
   * The compose stack's user this tool connects as: `dispatcher`, or `admin`
   * for tools that read dead letters.
   * @default {DISPATCHER_USER}
   */
  user?: string;
}

/** The broker a run uses. */
export interface ResolvedBroker {
  /** The URL, password included: print it only through `maskUrl`. */
  url: string;
  /** True when a URL was given: it must answer. Else the run may fall back to the embedded broker. */
  explicit: boolean;
  tls?: AmqpTls;
  /** The password file used, if any, to say so. */
  passwordFile?: string;
}

/** The file where compose.yaml's secrets-init keeps the password of the tool's user. */
export function stackPasswordFile(options: ResolveBrokerOptions): string {
  const dir = options.env("SECRETS_DIR") || "secrets";
  return new URL(
    `${options.user ?? DISPATCHER_USER}.password`,
    new URL(`${dir.replace(/\/*$/, "")}/`, options.root),
  )
    .pathname;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Picks the URL, password and TLS files of a run:
 *
 * 1. the URL from `--broker`, else `AMQP_URL` or `AMQP_URL_FILE`;
 * 2. its password from `--password-file`, else `AMQP_PASSWORD_FILE`, else,
 *    for a URL without password whose user is `dispatcher` or none, the
 *    compose stack's `secrets/dispatcher.password` when it exists;
 * 3. without a URL, `amqp://dispatcher@localhost:5672` with that password
 *    when it exists, else `amqp://guest:guest@localhost:5672`;
 * 4. TLS files from `--ca-file`, `--cert-file`, `--key-file`, else the
 *    `AMQP_*_FILE` variables.
 *
 * Throws a `TypeError` or a `SecretFileError` whose message says what to fix.
 */
export async function resolveBroker(
  flags: BrokerFlags,
  options: ResolveBrokerOptions,
): Promise<ResolvedBroker> {
  const { env } = options;
  const pick = (flag: string, flagValue: string | undefined, variable: string) => {
    if (flagValue !== undefined) return { value: flagValue, setting: flag };
    const value = env(variable);
    return value ? { value, setting: variable } : undefined;
  };
  const sources: AmqpTargetSources = {
    url: pick("--broker", flags.broker, "AMQP_URL"),
    urlFile: flags.broker === undefined ? pick("", undefined, "AMQP_URL_FILE") : undefined,
    passwordFile: pick("--password-file", flags.passwordFile, "AMQP_PASSWORD_FILE"),
    caFile: pick("--ca-file", flags.caFile, "AMQP_CA_FILE"),
    certFile: pick("--cert-file", flags.certFile, "AMQP_CERT_FILE"),
    keyFile: pick("--key-file", flags.keyFile, "AMQP_KEY_FILE"),
  };
  const explicit = sources.url !== undefined || sources.urlFile !== undefined;
  const user = options.user ?? DISPATCHER_USER;
  const stackFile = stackPasswordFile(options);
  const stack: Setting = { value: stackFile, setting: `the ${user} password of compose.yaml` };
  let defaultUrl = LOCAL_AMQP_URL;
  if (!sources.passwordFile && await exists(stackFile)) {
    if (!explicit) {
      defaultUrl = `amqp://${user}@localhost:5672`;
      sources.passwordFile = stack;
    } else if (sources.url) {
      const url = parseOrUndefined(sources.url.value);
      if (url && !url.password && (url.username === "" || url.username === user)) {
        url.username = user;
        sources.url = { ...sources.url, value: url.toString() };
        sources.passwordFile = stack;
      }
    }
  }
  const target = await resolveAmqpTarget(sources, {
    defaultUrl,
    names: DISPATCHER_SETTING_NAMES,
  });
  return {
    url: target.url,
    explicit,
    tls: target.tls,
    passwordFile: sources.passwordFile?.value,
  };
}

function parseOrUndefined(text: string): URL | undefined {
  try {
    return new URL(text);
  } catch {
    return undefined;
  }
}
