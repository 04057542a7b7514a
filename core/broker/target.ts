/**
 * The one resolver of a broker's settings, for every process that connects:
 * a worker (environment variables only), the command-line tools (flags, then
 * variables), the client library (options, then variables) and the
 * dashboard. In order of precedence: the settings a caller was given, then
 * `AMQP_*` variables, then the password the compose stack's secrets-init
 * made for the caller's user (`secrets/<user>.password`, sent only to a
 * broker on this machine), then guest on localhost. The files named are
 * read here (passwords, a whole URL, TLS certificates), every failure names
 * the setting and the fix, and the result carries the names of its
 * settings, so that `connect()` words its own failures the same way.
 *
 * @module
 */

import { ConfigError } from "../config_error.ts";
import type { BrokerTls, TlsSettingNames } from "./broker.ts";
import { checkBrokerUrl, encrypts } from "./connect.ts";
import { readSecretFile } from "./secret_file.ts";
import { maskUrl, splitUrls, userOfUrl } from "./url.ts";

/** Where a broker is looked for when no URL is given and no stack password exists. */
export const DEFAULT_BROKER_URL = "amqp://guest:guest@localhost:5672";

/** The variables the resolver reads, besides `SECRETS_DIR` for a caller with a stack user. */
export const BROKER_ENV_VARS = [
  "AMQP_URL",
  "AMQP_URL_FILE",
  "AMQP_PASSWORD_FILE",
  "AMQP_CA_FILE",
  "AMQP_CERT_FILE",
  "AMQP_KEY_FILE",
] as const;

/** Hosts that are this machine: the only ones the compose stack's password is sent to. */
const LOCAL_HOSTS = new Set(["localhost", "127.0.0.1", "[::1]"]);

/** A caller's broker settings, each optional: flags, or the client's options. */
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

/** The variable of each setting: a worker's only names, every caller's fallback. */
const BROKER_VARIABLES: Readonly<BrokerSettingNames> = Object.freeze({
  url: "AMQP_URL",
  passwordFile: "AMQP_PASSWORD_FILE",
  caFile: "AMQP_CA_FILE",
  certFile: "AMQP_CERT_FILE",
  keyFile: "AMQP_KEY_FILE",
});

/** Options for {@linkcode resolveBrokerTarget}. */
export interface ResolveBrokerTargetOptions {
  /** What the caller was given; each wins over its variable. */
  settings?: BrokerSettings;
  /**
   * How `settings` are named in messages.
   * @default {BROKER_VARIABLES}
   */
  names?: BrokerSettingNames;
  /**
   * Reads an environment variable.
   * @default {nothing: no variable is set}
   */
  env?: (name: string) => string | undefined;
  /**
   * The compose stack's user the caller connects as (`dispatcher`,
   * `operator`, `dashboard`), whose `secrets/<user>.password` is used for a
   * broker on this machine. Without it (a worker) no stack password is
   * looked for, and `SECRETS_DIR` is not read.
   */
  stackUser?: string;
  /**
   * The project's root, against which a relative `SECRETS_DIR` resolves (as in compose.yaml).
   * @default {this project's root}
   */
  root?: URL;
  /** Added to the fix when this process may not read the file of `setting` (see `readSecretFile`). */
  notCapableHint?: (setting: string) => string | undefined;
}

/** The broker a caller uses, resolved. */
export interface BrokerTarget {
  /**
   * The URL, password included: print it only through `label`. Several
   * nodes of one cluster are a comma-separated list, each with the password.
   */
  url: string;
  /** Where it is, safe to print (password masked). */
  label: string;
  /** The user the connection authenticates as. */
  user: string;
  /** True when a URL was given: it must answer. Else a run may fall back to the embedded broker. */
  explicit: boolean;
  tls?: BrokerTls;
  /** The password file used, if any, to say so. */
  passwordFile?: string;
  /** Every file read, so that a process can give up reading them. */
  files: string[];
  /** How the caller names its TLS settings, for the fixes of a failed connection. */
  names: TlsSettingNames;
}

/** A setting's value and the name it was given under, such as `AMQP_URL` or `--broker`. */
interface Setting {
  value: string;
  setting: string;
}

/** The file where compose.yaml's secrets-init keeps the password of `user`. */
export function stackPasswordFile(
  env: (name: string) => string | undefined,
  root: URL,
  user: string,
): string {
  const dir = env("SECRETS_DIR") || "secrets";
  return new URL(`${user}.password`, new URL(`${dir.replace(/\/*$/, "")}/`, root)).pathname;
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

/** `urls`, each with `change` applied. */
function eachUrl(urls: string[], change: (url: URL) => void): string {
  return urls.map((text) => {
    const url = new URL(text);
    change(url);
    return url.toString();
  }).join(",");
}

/** A name for a setting given as `name`, with its variable when that differs. */
function alsoVariable(name: string, variable: string): string {
  return name === variable ? name : `${name} or ${variable}`;
}

/**
 * Picks the URL, password and TLS files of a caller:
 *
 * 1. the URL from the settings, else `AMQP_URL` or `AMQP_URL_FILE`;
 * 2. its password from the settings' password file, else
 *    `AMQP_PASSWORD_FILE`, else, with a `stackUser`, for URLs on this
 *    machine (`localhost`, `127.0.0.1`, `::1`) without password whose user
 *    is that one or none, the compose stack's `secrets/<user>.password`
 *    when it exists;
 * 3. without a URL, `amqp://<stackUser>@localhost:5672` with that password
 *    when it exists, else {@linkcode DEFAULT_BROKER_URL};
 * 4. TLS files from the settings, else the `AMQP_*_FILE` variables.
 *
 * Throws a {@linkcode ConfigError} for settings that cannot go together and
 * a `SecretFileError` for a file it cannot use; no message contains a
 * password.
 */
export async function resolveBrokerTarget(
  options: ResolveBrokerTargetOptions = {},
): Promise<BrokerTarget> {
  const settings = options.settings ?? {};
  const env = options.env ?? (() => undefined);
  const names = options.names ?? BROKER_VARIABLES;
  const pick = (key: keyof BrokerSettings): Setting | undefined => {
    const given = settings[key];
    if (given !== undefined) return { value: given, setting: names[key] };
    const value = env(BROKER_VARIABLES[key]);
    return value ? { value, setting: BROKER_VARIABLES[key] } : undefined;
  };
  const urlSetting = pick("url");
  const urlFileValue = settings.url === undefined ? env("AMQP_URL_FILE") : undefined;
  const urlFile = urlFileValue ? { value: urlFileValue, setting: "AMQP_URL_FILE" } : undefined;
  if (urlSetting && urlFile) {
    throw new ConfigError(
      `Cannot choose the broker as both ${urlSetting.setting} and ${urlFile.setting} are set: set one`,
    );
  }
  const explicit = urlSetting !== undefined || urlFile !== undefined;
  const files: string[] = [];
  const read = async (source: Setting, trim: boolean) => {
    const notCapableHint = options.notCapableHint?.(source.setting);
    const text = await readSecretFile(source.value, source.setting, { notCapableHint, trim });
    files.push(source.value);
    return text;
  };

  let url = urlSetting ?? { value: DEFAULT_BROKER_URL, setting: "the default URL" };
  if (urlFile) url = { value: (await read(urlFile, true)).trim(), setting: urlFile.setting };
  let passwordFile = pick("passwordFile");
  if (!passwordFile && options.stackUser !== undefined) {
    const user = options.stackUser;
    const root = options.root ?? new URL("../../", import.meta.url);
    const stackFile = stackPasswordFile(env, root, user);
    const stack = { value: stackFile, setting: `the ${user} password of compose.yaml` };
    if (!explicit && await exists(stackFile)) {
      url = { ...url, value: `amqp://${user}@localhost:5672` };
      passwordFile = stack;
    } else if (urlSetting && takesStackPassword(url.value, user) && await exists(stackFile)) {
      url = { ...url, value: eachUrl(splitUrls(url.value), (one) => one.username = user) };
      passwordFile = stack;
    }
  }

  const urls = splitUrls(url.value);
  if (urls.length === 0) {
    throw new ConfigError(`Cannot use ${url.setting} as it is empty: use amqp://user@host:5672`);
  }
  for (const one of urls) checkBrokerUrl(one, url.setting);
  let resolved = urls.join(",");
  if (passwordFile) {
    const setting = passwordFile.setting;
    if (urls.some((one) => new URL(one).password)) {
      throw new ConfigError(
        `Cannot use ${setting} as the URL of ${url.setting} has a password already: remove it from the URL, or unset ${setting}`,
      );
    }
    if (urls.some((one) => !new URL(one).username)) {
      throw new ConfigError(
        `Cannot use ${setting} as the URL of ${url.setting} names no user: put the user in it, as in amqp://task_a@rabbitmq:5672`,
      );
    }
    const password = encodeURIComponent(await read(passwordFile, true));
    resolved = eachUrl(urls, (one) => one.password = password);
  }

  const tlsNames: TlsSettingNames = {
    caFile: alsoVariable(names.caFile, BROKER_VARIABLES.caFile),
    certFile: alsoVariable(names.certFile, BROKER_VARIABLES.certFile),
    keyFile: alsoVariable(names.keyFile, BROKER_VARIABLES.keyFile),
  };
  const tlsSources = { ca: pick("caFile"), cert: pick("certFile"), key: pick("keyFile") };
  const given = Object.values(tlsSources).filter((source) => source !== undefined);
  let tls: BrokerTls | undefined;
  if (given.length > 0) {
    if (!encrypts(urls[0])) {
      const setting = given[0].setting;
      throw new ConfigError(
        `Cannot use ${setting} with '${
          maskUrl(resolved)
        }' as that connection is not encrypted: use amqps:// (RabbitMQ listens for TLS on 5671), or unset ${setting}`,
      );
    }
    if (Boolean(tlsSources.cert) !== Boolean(tlsSources.key)) {
      const present = tlsSources.cert?.setting ?? tlsSources.key!.setting;
      const missing = tlsSources.cert ? tlsNames.keyFile : tlsNames.certFile;
      throw new ConfigError(`Cannot use ${present} without ${missing}: set both, or neither`);
    }
    tls = {};
    for (const key of ["ca", "cert", "key"] as const) {
      const source = tlsSources[key];
      if (source) {
        tls[key] = { pem: await read(source, false), setting: source.setting, path: source.value };
      }
    }
  }
  return {
    url: resolved,
    label: maskUrl(resolved),
    user: userOfUrl(urls[0]),
    explicit,
    tls,
    passwordFile: passwordFile?.value,
    files,
    names: tlsNames,
  };
}
