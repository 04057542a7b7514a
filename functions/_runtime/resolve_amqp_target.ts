/**
 * Turns a process's broker settings into what it connects with: the URL,
 * with its password read from a file when one is named, and the TLS
 * certificates. Workers take the settings from environment variables, the
 * dispatcher from flags and variables; both resolve them here, so both
 * accept the same files and refuse the same mistakes.
 *
 * @module
 */

import { maskUrl } from "./broker.ts";
import { readSecretFile } from "./secret_file.ts";

/** A setting's value and the name it was given under, such as `AMQP_URL` or `--broker`. */
export interface Setting {
  value: string;
  setting: string;
}

/** Where a process's broker settings come from; each is optional. */
export interface AmqpTargetSources {
  /** The URL itself, for example `amqp://task_a@rabbitmq:5672`. */
  url?: Setting;
  /** A file holding the whole URL, password included. */
  urlFile?: Setting;
  /** A file holding the password of the URL's user. */
  passwordFile?: Setting;
  /** A PEM file of the CA certificates that may sign the broker's certificate. */
  caFile?: Setting;
  /** A PEM file of this client's certificate, for brokers that ask for one. */
  certFile?: Setting;
  /** A PEM file of the private key of `certFile`. */
  keyFile?: Setting;
}

/** A PEM file that was read, and where it was named. */
export interface TlsFile {
  pem: string;
  setting: string;
  path: string;
}

/** TLS material for an `amqps://` connection. */
export interface AmqpTls {
  ca?: TlsFile;
  cert?: TlsFile;
  key?: TlsFile;
}

/** What to connect with. */
export interface AmqpTarget {
  /** The URL, password included: print it only through `maskUrl`. */
  url: string;
  tls?: AmqpTls;
  /** Every file read, so that the process can give up reading them. */
  files: string[];
}

/** How a process names its settings in messages, for settings it was not given. */
export interface AmqpSettingNames {
  caFile: string;
  certFile: string;
  keyFile: string;
}

/** Options for {@linkcode resolveAmqpTarget}. */
export interface ResolveAmqpTargetOptions {
  /** The URL when neither `url` nor `urlFile` is given. */
  defaultUrl: string;
  /** @default {WORKER_SETTING_NAMES} */
  names?: AmqpSettingNames;
  /** Added to the fix when this process may not read the file of `setting` (see `readSecretFile`). */
  notCapableHint?: (setting: string) => string | undefined;
}

/** The names workers give their TLS settings. */
export const WORKER_SETTING_NAMES: AmqpSettingNames = {
  caFile: "AMQP_CA_FILE",
  certFile: "AMQP_CERT_FILE",
  keyFile: "AMQP_KEY_FILE",
};

/** Throws a `TypeError` naming the fix when `url` is not an AMQP URL. */
export function checkAmqpUrl(url: string, setting: string): URL {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new TypeError(
      `Cannot use ${setting} as '${maskUrl(url)}' is not a URL: use amqp://user@host:5672`,
    );
  }
  if (parsed.protocol !== "amqp:" && parsed.protocol !== "amqps:") {
    throw new TypeError(
      `Cannot use ${setting} as '${
        maskUrl(url)
      }' uses '${parsed.protocol}': use amqp:// or amqps://`,
    );
  }
  return parsed;
}

/**
 * Reads the files the settings name and checks that they fit together.
 * Throws a `TypeError` for settings that contradict each other and a
 * `SecretFileError` for a file it cannot use; neither message contains a
 * password.
 */
export async function resolveAmqpTarget(
  sources: AmqpTargetSources,
  options: ResolveAmqpTargetOptions,
): Promise<AmqpTarget> {
  const names = options.names ?? WORKER_SETTING_NAMES;
  const files: string[] = [];
  const readFile = async (source: Setting, trim: boolean) => {
    const notCapableHint = options.notCapableHint?.(source.setting);
    const text = await readSecretFile(source.value, source.setting, { notCapableHint, trim });
    files.push(source.value);
    return text;
  };

  if (sources.url && sources.urlFile) {
    throw new TypeError(
      `Cannot choose the broker as both ${sources.url.setting} and ${sources.urlFile.setting} are set: set one`,
    );
  }
  let urlSetting = "the default URL";
  let url = options.defaultUrl;
  if (sources.urlFile) {
    urlSetting = sources.urlFile.setting;
    url = (await readFile(sources.urlFile, true)).trim();
  } else if (sources.url) {
    urlSetting = sources.url.setting;
    url = sources.url.value;
  }
  const parsed = checkAmqpUrl(url, urlSetting);

  if (sources.passwordFile) {
    const setting = sources.passwordFile.setting;
    if (parsed.password) {
      throw new TypeError(
        `Cannot use ${setting} as the URL of ${urlSetting} has a password already: remove it from the URL, or unset ${setting}`,
      );
    }
    if (!parsed.username) {
      throw new TypeError(
        `Cannot use ${setting} as the URL of ${urlSetting} names no user: put the user in it, as in amqp://task_a@rabbitmq:5672`,
      );
    }
    parsed.password = encodeURIComponent(await readFile(sources.passwordFile, true));
    url = parsed.toString();
  }

  const tlsSources = [sources.caFile, sources.certFile, sources.keyFile].filter((s) => s);
  if (tlsSources.length === 0) return { url, files };
  if (parsed.protocol !== "amqps:") {
    const setting = tlsSources[0]!.setting;
    throw new TypeError(
      `Cannot use ${setting} with '${
        maskUrl(url)
      }' as that connection is not encrypted: use amqps:// (RabbitMQ listens for TLS on 5671), or unset ${setting}`,
    );
  }
  if (Boolean(sources.certFile) !== Boolean(sources.keyFile)) {
    const given = sources.certFile?.setting ?? sources.keyFile!.setting;
    const missing = sources.certFile ? names.keyFile : names.certFile;
    throw new TypeError(`Cannot use ${given} without ${missing}: set both, or neither`);
  }
  const tls: AmqpTls = {};
  for (const key of ["ca", "cert", "key"] as const) {
    const source = sources[`${key}File`];
    if (!source) continue;
    tls[key] = { pem: await readFile(source, false), setting: source.setting, path: source.value };
  }
  return { url, tls, files };
}
