/**
 * AMQP URLs: checking them, printing them without their password, and the
 * TLS material that goes with an `amqps://` URL. Pure functions on text: the
 * broker adapter and the code that reads settings both use them.
 *
 * @module
 */

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

/** How a process names its settings in messages, for settings it was not given. */
export interface AmqpSettingNames {
  caFile: string;
  certFile: string;
  keyFile: string;
}

/** The names workers give their TLS settings. */
export const WORKER_SETTING_NAMES: AmqpSettingNames = {
  caFile: "AMQP_CA_FILE",
  certFile: "AMQP_CERT_FILE",
  keyFile: "AMQP_KEY_FILE",
};

/**
 * Hides the password of a broker URL so it is safe to print or log. Works
 * on text, not on a parsed URL: everything from `//` to the last `@` is the
 * user information, whatever characters the password holds (an unencoded
 * `/`, `@`, `#` or `?` included), and only its user name is kept. A list of
 * URLs separated by commas is masked URL by URL.
 */
export function maskUrl(url: string): string {
  if (url.includes(",")) return url.split(",").map((part) => maskUrl(part)).join(",");
  const start = url.indexOf("//");
  if (start === -1) return url;
  const at = url.lastIndexOf("@");
  if (at < start) return url.replace(/\/$/, "");
  const userInfo = url.slice(start + 2, at);
  const colon = userInfo.indexOf(":");
  const user = colon === -1 ? userInfo : `${userInfo.slice(0, colon)}:***`;
  return `${url.slice(0, start + 2)}${user}${url.slice(at)}`.replace(/\/$/, "");
}

/** The password of `url` (everything between the user's `:` and the last `@`), raw. */
function rawPassword(url: string): string {
  const start = url.indexOf("//");
  const at = url.lastIndexOf("@");
  if (start === -1 || at < start) return "";
  const userInfo = url.slice(start + 2, at);
  const colon = userInfo.indexOf(":");
  return colon === -1 ? "" : userInfo.slice(colon + 1);
}

/**
 * Replaces the password of `url` with `***` wherever it appears in `text`, in
 * its URL-encoded and its decoded form, so that an error message from a
 * library that quotes its input is safe to print. Passwords shorter than 4
 * characters are left alone: replacing them would garble every message.
 */
export function redactPassword(text: string, url: string): string {
  let redacted = text;
  for (const one of url.split(",")) {
    const password = rawPassword(one);
    const forms = new Set([password]);
    try {
      forms.add(decodeURIComponent(password));
    } catch {
      // Not valid percent-encoding: only the raw form can appear.
    }
    try {
      const parsed = new URL(one).password;
      forms.add(parsed);
      forms.add(decodeURIComponent(parsed));
    } catch {
      // Not a URL the WHATWG parser takes: the raw forms above are all there is.
    }
    for (const form of forms) {
      if (form.length >= 4) redacted = redacted.split(form).join("***");
    }
  }
  return redacted;
}

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
  if (!parsed.hostname) {
    throw new TypeError(
      `Cannot use ${setting} as '${maskUrl(url)}' names no host: use amqp://user@host:5672`,
    );
  }
  return parsed;
}

/**
 * The URLs of a comma-separated list (several nodes of one cluster), each
 * checked; a single URL gives a list of one.
 */
export function splitAmqpUrls(urls: string, setting: string): string[] {
  const list = urls.split(",").map((url) => url.trim()).filter((url) => url !== "");
  if (list.length === 0) {
    throw new TypeError(`Cannot use ${setting} as it is empty: use amqp://user@host:5672`);
  }
  for (const url of list) checkAmqpUrl(url, setting);
  return list;
}

/** The user a connection to `url` authenticates as: its user name, else RabbitMQ's `guest`. */
export function userOfUrl(url: string): string {
  try {
    const { username } = new URL(url);
    return username ? decodeURIComponent(username) : "guest";
  } catch {
    return "guest";
  }
}
