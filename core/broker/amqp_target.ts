/**
 * Turns a process's broker settings into what it connects with: the URL,
 * with its password read from a file when one is named, and the TLS
 * certificates. Workers take the settings from environment variables, the
 * dispatcher from flags and variables; both resolve them here, so both
 * accept the same files and refuse the same mistakes.
 *
 * @module
 */

import {
  type AmqpSettingNames,
  type AmqpTls,
  checkAmqpUrl,
  maskUrl,
  splitAmqpUrls,
  WORKER_SETTING_NAMES,
} from "./amqp_url.ts";
import { readSecretFile } from "./secret_file.ts";

export type { AmqpSettingNames, AmqpTls, TlsFile } from "./amqp_url.ts";
export { WORKER_SETTING_NAMES } from "./amqp_url.ts";

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

/** What to connect with. */
export interface AmqpTarget {
  /**
   * The URL, password included: print it only through `maskUrl`. Several
   * nodes of one cluster are a comma-separated list, each with the password.
   */
  url: string;
  tls?: AmqpTls;
  /** Every file read, so that the process can give up reading them. */
  files: string[];
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
  const urls = splitAmqpUrls(url, urlSetting);
  const parsed = checkAmqpUrl(urls[0], urlSetting);

  if (sources.passwordFile) {
    const setting = sources.passwordFile.setting;
    const withPassword = urls.map((one) => new URL(one)).find((one) => one.password);
    if (withPassword) {
      throw new TypeError(
        `Cannot use ${setting} as the URL of ${urlSetting} has a password already: remove it from the URL, or unset ${setting}`,
      );
    }
    if (urls.some((one) => !new URL(one).username)) {
      throw new TypeError(
        `Cannot use ${setting} as the URL of ${urlSetting} names no user: put the user in it, as in amqp://task_a@rabbitmq:5672`,
      );
    }
    const password = encodeURIComponent(await readFile(sources.passwordFile, true));
    url = urls.map((one) => {
      const withIt = new URL(one);
      withIt.password = password;
      return withIt.toString();
    }).join(",");
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
