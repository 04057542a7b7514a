/**
 * Who may see the dashboard: whoever holds its token. The URL printed at
 * start carries it once (`?token=`), which sets an HttpOnly, SameSite=Strict
 * cookie and redirects to the same page without it (so it leaves the
 * address bar and the history); programs send `Authorization: Bearer`.
 * Anything else gets 401. Tokens are compared in constant time.
 *
 * Requests that change something (a replay) must also come from the page
 * itself: a same-origin `Origin` (or `Sec-Fetch-Site: same-origin`) with a
 * JSON body, which no cross-site form can send; a program with the bearer
 * token is trusted as it is.
 *
 * @module
 */

import { timingSafeEqual } from "node:crypto";

/** The cookie that carries the token after the first visit. */
export const TOKEN_COOKIE = "dashboard_token";

/** Length of a generated token, in random bytes (256 bits). */
const TOKEN_BYTES = 32;

/** Shortest token accepted from `DASHBOARD_TOKEN`. */
export const MIN_TOKEN_CHARS = 16;

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

/** How a request stands. */
export type Access =
  /** It carries the token: serve it. */
  | { kind: "granted"; via: "cookie" | "bearer" }
  /** It carries the token in the URL: set the cookie and redirect to `location`. */
  | { kind: "login"; location: string }
  /** No token, or a wrong one. */
  | { kind: "denied" };

/** Checks requests against one token. */
export interface Auth {
  check(request: Request): Promise<Access>;
  /** The `Set-Cookie` value that logs a browser in. */
  readonly cookie: string;
}

function cookieOf(request: Request, name: string): string | undefined {
  const header = request.headers.get("cookie");
  if (!header) return undefined;
  for (const part of header.split(";")) {
    const [key, ...value] = part.trim().split("=");
    if (key === name) return value.join("=");
  }
  return undefined;
}

/** An {@linkcode Auth} for `token`. */
export async function createAuth(token: string): Promise<Auth> {
  const expected = await digest(token);
  // Equal-length digests, compared without an early exit: the time taken
  // says nothing about how much of a guess was right.
  const matches = async (given: string | undefined) =>
    given !== undefined && timingSafeEqual(await digest(given), expected);
  return {
    cookie: `${TOKEN_COOKIE}=${token}; HttpOnly; SameSite=Strict; Path=/`,
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
        url.searchParams.delete("token");
        return { kind: "login", location: url.pathname + url.search };
      }
      return await matches(cookieOf(request, TOKEN_COOKIE))
        ? { kind: "granted", via: "cookie" }
        : { kind: "denied" };
    },
  };
}

/**
 * Whether a state-changing request comes from the dashboard's own page: a
 * JSON body, and `Origin` naming this server (or, without it, the browser's
 * `Sec-Fetch-Site: same-origin`). A cross-site page can send neither.
 */
export function isSameOriginJson(request: Request): boolean {
  const type = request.headers.get("content-type") ?? "";
  if (!/^application\/json\b/i.test(type)) return false;
  const origin = request.headers.get("origin");
  const host = request.headers.get("host");
  if (origin !== null) return host !== null && origin === `http://${host}`;
  return request.headers.get("sec-fetch-site") === "same-origin";
}
