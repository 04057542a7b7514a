/**
 * A worker's HTTP endpoints for orchestrators and monitoring:
 * `GET /healthz` answers 200 while the worker consumes its queue and 503
 * otherwise (connecting, reconnecting, draining); `GET /metrics` answers the
 * Prometheus text exposition.
 *
 * @module
 */

/** Options for {@linkcode serveHealth}. */
export interface ServeHealthOptions {
  /** Port to listen on; 0 picks a free one (see {@linkcode HealthServer.port}). */
  port: number;
  /**
   * Address to listen on.
   * @default {"0.0.0.0"}
   */
  hostname?: string;
  /** Whether the worker consumes its queue right now. */
  consuming: () => boolean;
  /** The metrics, in the Prometheus text exposition format. */
  metrics: () => string;
}

/** A running health and metrics server. */
export interface HealthServer {
  /** The port it listens on. */
  readonly port: number;
  /** Stops listening. */
  shutdown(): Promise<void>;
}

/** The content type of the Prometheus text exposition format. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

function text(body: string, status: number, headers: Record<string, string> = {}): Response {
  return new Response(body, {
    status,
    headers: {
      "content-type": "text/plain; charset=utf-8",
      "cache-control": "no-store",
      ...headers,
    },
  });
}

/** Answers one request; exported for tests that need no socket. */
export function handleHealthRequest(request: Request, options: ServeHealthOptions): Response {
  const { pathname } = new URL(request.url);
  if (pathname !== "/healthz" && pathname !== "/metrics") {
    return text("Not found: use /healthz or /metrics\n", 404);
  }
  if (request.method !== "GET" && request.method !== "HEAD") {
    return text(`Cannot ${request.method} ${pathname}: use GET\n`, 405, { allow: "GET, HEAD" });
  }
  if (pathname === "/metrics") {
    return text(options.metrics(), 200, { "content-type": METRICS_CONTENT_TYPE });
  }
  return options.consuming() ? text("ok: consuming\n", 200) : text("not consuming\n", 503);
}

/**
 * Starts the server. Throws `Deno.errors.AddrInUse` when the port is taken
 * and `Deno.errors.NotCapable` without permission to listen there.
 */
export function serveHealth(options: ServeHealthOptions): HealthServer {
  const server = Deno.serve({
    port: options.port,
    hostname: options.hostname ?? "0.0.0.0",
    // Without it Deno prints a line to stdout, where only log lines belong.
    onListen: () => {},
  }, (request) => handleHealthRequest(request, options));
  return {
    port: server.addr.port,
    shutdown: () => server.shutdown(),
  };
}
