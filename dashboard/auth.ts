/**
 * Who may see the dashboard: whoever holds its token. The URL printed at
 * start carries it once (`?token=`), which opens a session: a random id in
 * an HttpOnly, SameSite=Strict cookie (never the token itself, so a cookie
 * that leaks does not reveal it), and a redirect to the same page without
 * the token (so it leaves the address bar and the history); programs send
 * `Authorization: Bearer`. Anything else gets 401. Tokens and session ids
 * are compared as SHA-256 digests, the token with `timingSafeEqual`.
 *
 * Browsers send a cookie to every port of the host name that set it, so
 * the page has a host name of its own: on a loopback address the dashboard
 * logs browsers in only at `http://dashboard.localhost:<port>` (browsers
 * resolve `*.localhost` to loopback), and a login at another loopback name
 * is sent there first. Its cookie then never reaches another service on
 * `localhost` or `127.0.0.1`. Behind a TLS proxy the public origin is given
 * (`--public-origin https://...`): the cookie is then `Secure` and named
 * `__Host-…`, which no other origin can set.
 *
 * Requests that change something (a replay) must also come from the page
 * itself: a JSON body and an `Origin` equal to the public origin (or, without
 * `Origin`, `Sec-Fetch-Site: same-origin`), which no cross-site form can
 * send; a program with the bearer token is trusted as it is.
 *
 * @module
 */

import { timingSafeEqual } from "node:crypto";

/** The session cookie's name on plain HTTP. */
export const SESSION_COOKIE = "dashboard_session";
/** Its name behind TLS: the `__Host-` prefix makes browsers refuse it from any other origin. */
export const SECURE_SESSION_COOKIE = `__Host-${SESSION_COOKIE}`;
/** The dashboard's own host name on a loopback address. */
export const DASHBOARD_HOST_NAME = "dashboard.localhost";

/** Length of a generated token or session id, in random bytes (256 bits). */
const TOKEN_BYTES = 32;

/** Shortest token accepted from `DASHBOARD_TOKEN`. */
export const MIN_TOKEN_CHARS = 16;

/** Sessions kept at once; past it the oldest ends. */
export const MAX_SESSIONS = 64;
/** How long a session lasts. */
export const SESSION_MS = 12 * 60 * 60 * 1000;
/** Cookies of the session's name looked at in one request (a page elsewhere may add junk ones). */
const MAX_COOKIES_CHECKED = 8;

/**
 * How the token is compared with a guess: two SHA-256 digests of equal
 * length, with no early exit, so the time taken says nothing about how
 * much of a guess was right.
 */
export const COMPARE_DIGESTS: (a: Uint8Array, b: Uint8Array) => boolean = timingSafeEqual;

/** A new random token: URL-safe base64 of 32 random bytes. */
export function generateToken(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(TOKEN_BYTES));
  return btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_")
    .replace(/=+$/, "");
}

/** Whether `token` can be given in a URL and a cookie as it is. */
export function isUsableToken(token: string): boolean {
  return token.length >= MIN_TOKEN_CHARS && /^[A-Za-z0-9._~-]+$/.test(token);
}

const encoder = new TextEncoder();

async function digest(text: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(text)));
}

async function hexDigest(text: string): Promise<string> {
  return [...await digest(text)].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** How a request stands. */
export type Access =
  /** It carries the token or a session: serve it. */
  | { kind: "granted"; via: "cookie" | "bearer" }
  /** It carries the token in the URL: set `setCookie` (a new session) and redirect to `location`. */
  | { kind: "login"; location: string; setCookie: string }
  /** It carries the token in the URL at another host name: log in at `location` instead. */
  | { kind: "elsewhere"; location: string }
  /** No token, or a wrong one. */
  | { kind: "denied" };

/** Checks requests against one token. */
export interface Auth {
  check(request: Request): Promise<Access>;
  /** Sessions open now. */
  readonly sessions: number;
}

/** Options for {@linkcode createAuth}. */
export interface AuthOptions {
  /**
   * Where browsers reach the page, such as `https://dash.example.com` or
   * `http://dashboard.localhost:8025`: an `https:` origin makes the cookie
   * `Secure`. Without it, the Host a request names is taken as the page's.
   */
  publicOrigin?: string;
  /**
   * Log browsers in only at `publicOrigin`'s host name, sending a login
   * elsewhere there (the loopback default, where the host is known).
   * @default {false}
   */
  loginAtPublicOriginOnly?: boolean;
  /** @default {COMPARE_DIGESTS} */
  compare?: (a: Uint8Array, b: Uint8Array) => boolean;
  /** @default {Date.now} */
  now?: () => number;
}

/** Every value of cookie `name` in the request, in the order sent (a page elsewhere may add more). */
function cookiesOf(request: Request, name: string): string[] {
  const header = request.headers.get("cookie");
  if (!header) return [];
  const values: string[] = [];
  for (const part of header.split(";")) {
    const [key, ...value] = part.trim().split("=");
    if (key === name) values.push(value.join("="));
  }
  return values;
}

/** The host a request names (`Host`), without a port. */
export function hostNameOf(request: Request): string {
  const host = request.headers.get("host") ?? new URL(request.url).host;
  return host.replace(/:\d+$/, "").toLowerCase();
}

/** A path that stays on this server: `//evil.example` would be another host. */
function localPath(url: URL): string {
  return `/${url.pathname.replace(/^\/+/, "")}${url.search}`;
}

/** An {@linkcode Auth} for `token`. */
export async function createAuth(token: string, options: AuthOptions = {}): Promise<Auth> {
  const expected = await digest(token);
  const compare = options.compare ?? COMPARE_DIGESTS;
  const now = options.now ?? Date.now;
  const publicOrigin = options.publicOrigin === undefined
    ? undefined
    : new URL(options.publicOrigin);
  const secure = publicOrigin?.protocol === "https:";
  const cookieName = secure ? SECURE_SESSION_COOKIE : SESSION_COOKIE;
  /** Session expiry by the hex digest of its id: a lookup's timing tells nothing of an id. */
  const sessions = new Map<string, number>();
  const matches = async (given: string | undefined) =>
    given !== undefined && compare(await digest(given), expected);

  async function openSession(): Promise<string> {
    for (const [key, expires] of sessions) {
      if (expires > now() && sessions.size < MAX_SESSIONS) break;
      sessions.delete(key);
    }
    const id = generateToken();
    sessions.set(await hexDigest(id), now() + SESSION_MS);
    return `${cookieName}=${id}; HttpOnly; SameSite=Strict; Path=/${secure ? "; Secure" : ""}`;
  }

  async function hasSession(request: Request): Promise<boolean> {
    for (const id of cookiesOf(request, cookieName).slice(0, MAX_COOKIES_CHECKED)) {
      const key = await hexDigest(id);
      const expires = sessions.get(key);
      if (expires === undefined) continue;
      if (expires > now()) return true;
      sessions.delete(key);
    }
    return false;
  }

  return {
    get sessions() {
      return sessions.size;
    },
    async check(request) {
      const authorization = request.headers.get("authorization");
      if (authorization !== null) {
        const bearer = authorization.match(/^Bearer\s+(\S+)$/i)?.[1];
        return await matches(bearer) ? { kind: "granted", via: "bearer" } : { kind: "denied" };
      }
      const url = new URL(request.url);
      const inUrl = url.searchParams.get("token");
      if (inUrl !== null && request.method === "GET") {
        if (!await matches(inUrl)) return { kind: "denied" };
        if (
          publicOrigin && options.loginAtPublicOriginOnly &&
          hostNameOf(request) !== publicOrigin.hostname
        ) {
          return { kind: "elsewhere", location: publicOrigin.origin + localPath(url) };
        }
        url.searchParams.delete("token");
        return { kind: "login", location: localPath(url), setCookie: await openSession() };
      }
      return await hasSession(request) ? { kind: "granted", via: "cookie" } : { kind: "denied" };
    },
  };
}

/**
 * Whether a state-changing request comes from the dashboard's own page: a
 * JSON body, and `Origin` naming `publicOrigin` (without one, this server as
 * the request's Host names it), or, without `Origin`, the browser's
 * `Sec-Fetch-Site: same-origin`. A cross-site page can send neither.
 */
export function isSameOriginJson(request: Request, publicOrigin?: string): boolean {
  const type = request.headers.get("content-type") ?? "";
  if (!/^application\/json\b/i.test(type)) return false;
  const origin = request.headers.get("origin");
  if (origin !== null) {
    if (publicOrigin !== undefined) return origin === new URL(publicOrigin).origin;
    const host = request.headers.get("host");
    return host !== null && origin === `http://${host}`;
  }
  return request.headers.get("sec-fetch-site") === "same-origin";
}
