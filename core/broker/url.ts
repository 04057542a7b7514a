/**
 * Broker URLs as text: printing them without their password, redacting a
 * password from a library's message, splitting the comma-separated nodes of
 * one cluster, and the user a URL authenticates as. Pure functions: the
 * settings resolver, `connect()` and the adapters all use them.
 *
 * @module
 */

import { GUEST_USER } from "../contract/users.ts";

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

/** The URLs of a comma-separated list (the nodes of one cluster), trimmed; empty ones dropped. */
export function splitUrls(urls: string): string[] {
  return urls.split(",").map((url) => url.trim()).filter((url) => url !== "");
}

/** The user a connection to `url` authenticates as: its user name, else RabbitMQ's `guest`. */
export function userOfUrl(url: string): string {
  try {
    const { username } = new URL(url);
    return username ? decodeURIComponent(username) : GUEST_USER;
  } catch {
    return GUEST_USER;
  }
}
