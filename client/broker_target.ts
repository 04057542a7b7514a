/**
 * Where a caller connects and with which credentials: the settings first
 * (flags, or the client's options), then environment variables, then the
 * password that compose.yaml's secrets-init made for the caller's user. So
 * after `docker compose up -d`, `deno task dispatch` connects as the
 * dispatcher with no option at all. That password goes only to a broker on
 * this machine: a URL naming any other host never gets it.
 *
 * @module
 */

import {
  type AmqpSettingNames,
  type AmqpTargetSources,
  type AmqpTls,
  resolveAmqpTarget,
  type Setting,
} from "../core/broker/amqp_target.ts";
import { maskUrl, userOfUrl } from "../core/broker/amqp_url.ts";
import { ConfigError } from "../core/config_error.ts";
import { DISPATCHER_USER } from "../core/contract/users.ts";

/** Where RabbitMQ is looked for when no URL is given and no stack password exists. */
export const LOCAL_AMQP_URL = "amqp://guest:guest@localhost:5672";

/** Hosts that are this machine: the only ones the compose stack's password is sent to. */
const LOCAL_HOSTS = new Set(["localhost", "127.0.0.1", "[::1]"]);

/** A caller's broker settings; each is optional. */
export interface BrokerSettings {
  /** Broker URL, or the nodes of one cluster separated by commas. */
  url?: string;
  /** File holding the password of the URL's user. */
  passwordFile?: string;
  /** amqps://: PEM file of the CA that signs the broker's certificate. */
  caFile?: string;
  /** amqps://: PEM file of a client certificate, with `keyFile`. */
  certFile?: string;
  /** amqps://: PEM file of the client certificate's private key. */
  keyFile?: string;
}

/** How a caller names each of its settings in messages, such as `--broker` or `url`. */
export type BrokerSettingNames = Record<keyof BrokerSettings, string>;

/** The names of the command-line tools' flags. */
const FLAG_NAMES: BrokerSettingNames = {
  url: "--broker",
  passwordFile: "--password-file",
  caFile: "--ca-file",
  certFile: "--cert-file",
  keyFile: "--key-file",
};

const VARIABLES: BrokerSettingNames = {
  url: "AMQP_URL",
  passwordFile: "AMQP_PASSWORD_FILE",
  caFile: "AMQP_CA_FILE",
  certFile: "AMQP_CERT_FILE",
  keyFile: "AMQP_KEY_FILE",
};

/** Options for {@linkcode resolveBrokerTarget}. */
export interface ResolveBrokerOptions {
  settings?: BrokerSettings;
  /**
   * Reads an environment variable.
   * @default {nothing: no variable is set}
   */
  env?: (name: string) => string | undefined;
  /**
   * The project's root, against which a relative `SECRETS_DIR` resolves (as in compose.yaml).
   * @default {this project's root}
   */
  root?: URL;
  /**
   * The compose stack's user this caller connects as: `dispatcher`, or
   * `operator` for the dead-letter tool.
   * @default {DISPATCHER_USER}
   */
  user?: string;
  /** @default {FLAG_NAMES} */
  names?: BrokerSettingNames;
}

/** The broker a caller uses. */
export interface BrokerTarget {
  /** The URL, password included: print it only through `maskUrl`. */
  url: string;
  /** Where it is, safe to print (password masked). */
  label: string;
  /** The user the connection authenticates as. */
  user: string;
  /** True when a URL was given: it must answer. Else a run may fall back to the embedded broker. */
  explicit: boolean;
  tls?: AmqpTls;
  /** The password file used, if any, to say so. */
  passwordFile?: string;
}

/** The file where compose.yaml's secrets-init keeps the password of `user`. */
export function stackPasswordFile(
  env: (name: string) => string | undefined,
  root: URL,
  user: string = DISPATCHER_USER,
): string {
  const dir = env("SECRETS_DIR") || "secrets";
  return new URL(`${user}.password`, new URL(`${dir.replace(/\/*$/, "")}/`, root)).pathname;
}

/** How a connection's TLS settings are named in messages: the setting, or its variable. */
export function tlsSettingNames(names: BrokerSettingNames = FLAG_NAMES): AmqpSettingNames {
  return {
    caFile: `${names.caFile} or ${VARIABLES.caFile}`,
    certFile: `${names.certFile} or ${VARIABLES.certFile}`,
    keyFile: `${names.keyFile} or ${VARIABLES.keyFile}`,
  };
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Whether every URL of a list names this machine, and none has a password or another user. */
function takesStackPassword(urls: string, user: string): boolean {
  return urls.split(",").every((text) => {
    try {
      const url = new URL(text.trim());
      return LOCAL_HOSTS.has(url.hostname) && !url.password &&
        (url.username === "" || url.username === user);
    } catch {
      return false;
    }
  });
}

function withUser(urls: string, user: string): string {
  return urls.split(",").map((text) => {
    const url = new URL(text.trim());
    url.username = user;
    return url.toString();
  }).join(",");
}

/**
 * Picks the URL, password and TLS files of a caller:
 *
 * 1. the URL from the settings, else `AMQP_URL` or `AMQP_URL_FILE`;
 * 2. its password from the settings' password file, else
 *    `AMQP_PASSWORD_FILE`, else, for URLs on this machine (`localhost`,
 *    `127.0.0.1`, `::1`) without password whose user is the caller's or
 *    none, the compose stack's `secrets/<user>.password` when it exists;
 * 3. without a URL, `amqp://<user>@localhost:5672` with that password when
 *    it exists, else `amqp://guest:guest@localhost:5672`;
 * 4. TLS files from the settings, else the `AMQP_*_FILE` variables.
 *
 * Throws a {@linkcode ConfigError} or a `SecretFileError` whose message
 * says what to fix.
 */
export async function resolveBrokerTarget(
  options: ResolveBrokerOptions = {},
): Promise<BrokerTarget> {
  const settings = options.settings ?? {};
  const env = options.env ?? (() => undefined);
  const names = options.names ?? FLAG_NAMES;
  const pick = (key: keyof BrokerSettings): Setting | undefined => {
    const given = settings[key];
    if (given !== undefined) return { value: given, setting: names[key] };
    const value = env(VARIABLES[key]);
    return value ? { value, setting: VARIABLES[key] } : undefined;
  };
  const urlFile = env("AMQP_URL_FILE");
  const sources: AmqpTargetSources = {
    url: pick("url"),
    urlFile: settings.url === undefined && urlFile
      ? { value: urlFile, setting: "AMQP_URL_FILE" }
      : undefined,
    passwordFile: pick("passwordFile"),
    caFile: pick("caFile"),
    certFile: pick("certFile"),
    keyFile: pick("keyFile"),
  };
  const explicit = sources.url !== undefined || sources.urlFile !== undefined;
  const user = options.user ?? DISPATCHER_USER;
  const stackFile = stackPasswordFile(
    env,
    options.root ?? new URL("../", import.meta.url),
    user,
  );
  const stack: Setting = { value: stackFile, setting: `the ${user} password of compose.yaml` };
  let defaultUrl = LOCAL_AMQP_URL;
  if (!sources.passwordFile && await exists(stackFile)) {
    if (!explicit) {
      defaultUrl = `amqp://${user}@localhost:5672`;
      sources.passwordFile = stack;
    } else if (sources.url && takesStackPassword(sources.url.value, user)) {
      sources.url = { ...sources.url, value: withUser(sources.url.value, user) };
      sources.passwordFile = stack;
    }
  }
  let target;
  try {
    target = await resolveAmqpTarget(sources, { defaultUrl, names: tlsSettingNames(names) });
  } catch (error) {
    // resolveAmqpTarget's contract: a TypeError is settings that cannot go together.
    if (error instanceof TypeError) throw new ConfigError(error.message, { cause: error });
    throw error;
  }
  return {
    url: target.url,
    label: maskUrl(target.url),
    user: userOfUrl(target.url.split(",")[0]),
    explicit,
    tls: target.tls,
    passwordFile: sources.passwordFile?.value,
  };
}
