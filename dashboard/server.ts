/**
 * The dashboard's HTTP server (`serveDashboard`: listening, and the page
 * served behind its token): the page and its script and style, the
 * picture as JSON (`GET /api/state`), its live updates as server-sent events
 * (`GET /api/events`), and the replay (`POST /api/replay`, as the operator).
 * Every route needs the token (`auth.ts`). Every response forbids framing,
 * inline scripts and referrers: the page renders hostile text (task
 * payloads, error messages) only as text, and the Content Security Policy
 * would stop a script that slipped in anyway.
 *
 * @module
 */

import { UsageError } from "../dispatcher/cli/options.ts";
import {
  type Auth,
  createAuth,
  DASHBOARD_HOST_NAME,
  hostNameOf,
  isSameOriginJson,
} from "./auth.ts";
import type { DashboardState } from "./dashboard_state.ts";
import type { SseHub } from "./sse.ts";

/** The page's files, read once at start. */
export interface PageFiles {
  html: string;
  js: string;
  css: string;
}

/** Reads the page's files from `dashboard/static/`. */
export async function readPageFiles(): Promise<PageFiles> {
  const read = (name: string) => Deno.readTextFile(new URL(`./static/${name}`, import.meta.url));
  const [html, js, css] = await Promise.all([
    read("index.html"),
    read("app.js"),
    read("app.css"),
  ]);
  return { html, js, css };
}

const SECURITY_HEADERS: Record<string, string> = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store",
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-resource-policy": "same-origin",
};

const LOOPBACK_NAMES = ["localhost", "127.0.0.1", "[::1]", DASHBOARD_HOST_NAME];
const KNOWN_PATHS = new Set([
  "/",
  "/app.js",
  "/app.css",
  "/api/state",
  "/api/events",
  "/api/replay",
]);

/** Options for {@linkcode dashboardHandler}. */
export interface DashboardHandlerOptions {
  auth: Auth;
  state: DashboardState;
  hub: SseHub;
  page: PageFiles;
  /**
   * Served on a loopback address: then a request must name a loopback host
   * (or the public origin's), so that a DNS-rebound name reaches nothing.
   */
  loopback: boolean;
  /**
   * Where browsers reach the page (`--public-origin`, or
   * `http://dashboard.localhost:<port>` on loopback): a replay's `Origin`
   * must be it.
   */
  publicOrigin?: string;
}

function respond(body: BodyInit | null, status: number, type?: string, extra = {}): Response {
  const headers: Record<string, string> = { ...SECURITY_HEADERS, ...extra };
  if (type) headers["content-type"] = type;
  return new Response(body, { status, headers });
}

function json(value: unknown, status = 200): Response {
  return respond(JSON.stringify(value), status, "application/json; charset=utf-8");
}

const UNAUTHORIZED = `<!doctype html><meta charset="utf-8"><title>Dashboard: 401</title>
<h1>401: the dashboard needs its token</h1>
<p>Open the address <code>deno task dashboard</code> printed at start (it ends in
<code>?token=…</code>), or send <code>Authorization: Bearer &lt;token&gt;</code>.</p>`;

/** The request handler of the dashboard; see the module documentation. */
export function dashboardHandler(
  options: DashboardHandlerOptions,
): (request: Request) => Promise<Response> {
  const { auth, state, hub, page } = options;
  const hosts = new Set(LOOPBACK_NAMES);
  if (options.publicOrigin) hosts.add(new URL(options.publicOrigin).hostname);
  return async (request) => {
    const url = new URL(request.url);
    if (options.loopback && !hosts.has(hostNameOf(request))) {
      return respond(
        `Misdirected request: use ${options.publicOrigin ?? "http://127.0.0.1"}\n`,
        421,
      );
    }
    const access = await auth.check(request);
    if (access.kind === "login") {
      return respond(null, 303, undefined, {
        location: access.location,
        "set-cookie": access.setCookie,
      });
    }
    if (access.kind === "elsewhere") {
      return respond(null, 303, undefined, { location: access.location });
    }
    if (access.kind === "denied") {
      return respond(UNAUTHORIZED, 401, "text/html; charset=utf-8", {
        "www-authenticate": 'Bearer realm="dashboard"',
      });
    }
    const route = `${request.method} ${url.pathname}`;
    switch (route) {
      case "GET /":
        return respond(page.html, 200, "text/html; charset=utf-8");
      case "GET /app.js":
        return respond(page.js, 200, "text/javascript; charset=utf-8");
      case "GET /app.css":
        return respond(page.css, 200, "text/css; charset=utf-8");
      case "GET /api/state":
        return json({ ...state.snapshot(), events: state.recent() });
      case "GET /api/events":
        return hub.open(state.opening(), SECURITY_HEADERS);
      case "POST /api/replay":
        return await replay(request, access.via, state, options.publicOrigin);
    }
    if (KNOWN_PATHS.has(url.pathname)) {
      return respond(`Method ${request.method} not allowed on ${url.pathname}\n`, 405);
    }
    return respond(`Not found: ${url.pathname}\n`, 404);
  };
}

async function replay(
  request: Request,
  via: "cookie" | "bearer",
  state: DashboardState,
  publicOrigin: string | undefined,
): Promise<Response> {
  // A browser's cookie goes with any request to this server, even one a
  // page elsewhere makes: only the dashboard's own page may replay.
  if (via === "cookie" && !isSameOriginJson(request, publicOrigin)) {
    return json({
      error:
        "Cannot replay from another page: send JSON from the dashboard itself, or use Authorization: Bearer",
    }, 403);
  }
  let fn: unknown;
  try {
    fn = (await request.json())?.function;
  } catch {
    fn = undefined;
  }
  if (typeof fn !== "string") {
    return json({ error: 'Cannot replay: send {"function": "<name>"}' }, 400);
  }
  try {
    return json(await state.replay(fn));
  } catch (error) {
    const status = error instanceof TypeError ? 400 : 503;
    return json({ error: (error as Error).message }, status);
  }
}

/** Where and as whom {@linkcode serveDashboard} serves the page. */
export interface ServeDashboardOptions {
  host: string;
  /** 0: a port the system picks. */
  port: number;
  /** `--public-origin`, when given. */
  publicOrigin?: string;
  token: string;
  state: DashboardState;
  hub: SseHub;
}

/** The page served: its server, the port it got, and the origin the page is at. */
export interface Serving {
  server: Deno.HttpServer;
  port: number;
  /** It listens on a loopback address only. */
  loopback: boolean;
  publicOrigin?: string;
}

function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\./.test(host);
}

function listen(
  host: string,
  port: number,
  handler: (request: Request) => Promise<Response>,
): Promise<{ server: Deno.HttpServer; port: number }> {
  return new Promise((resolve, reject) => {
    try {
      let bound = port;
      const server = Deno.serve({
        hostname: host,
        port,
        // Called before Deno.serve returns.
        onListen: (address) => bound = address.port,
      }, handler);
      resolve({ server, port: bound });
    } catch (error) {
      const why = error instanceof Deno.errors.AddrInUse
        ? "the address is in use: stop what uses it, or give another --port"
        : error instanceof Deno.errors.PermissionDenied || error instanceof Deno.errors.NotCapable
        ? "this process may not listen there: give a --port above 1023, or allow it"
        : `${(error as Error).message}: give another --host or --port`;
      reject(new UsageError(`Cannot listen on ${host}:${port} as ${why}`));
    }
  });
}

/** Reads the page's files, listens, and serves them behind the token; on failure nothing listens. */
export async function serveDashboard(options: ServeDashboardOptions): Promise<Serving> {
  const loopback = isLoopback(options.host);
  // The handler needs the port, which --port 0 leaves to the system.
  let handle: ((request: Request) => Promise<Response>) | undefined;
  let listening: { server: Deno.HttpServer; port: number } | undefined;
  try {
    const page = await readPageFiles();
    listening = await listen(
      options.host,
      options.port,
      (request) => handle ? handle(request) : Promise.resolve(new Response(null, { status: 503 })),
    );
    // On loopback the page gets a host name of its own, so that its cookie
    // reaches no other service on localhost or 127.0.0.1.
    const publicOrigin = options.publicOrigin ??
      (loopback ? `http://${DASHBOARD_HOST_NAME}:${listening.port}` : undefined);
    handle = dashboardHandler({
      auth: await createAuth(options.token, {
        publicOrigin,
        loginAtPublicOriginOnly: loopback && options.publicOrigin === undefined,
      }),
      state: options.state,
      hub: options.hub,
      page,
      loopback,
      publicOrigin,
    });
    return { ...listening, loopback, publicOrigin };
  } catch (error) {
    await listening?.server.shutdown();
    throw error;
  }
}
