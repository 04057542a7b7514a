/**
 * A worker's HTTP endpoints for orchestrators and monitoring:
 * `GET /healthz` answers 200 while the worker consumes its queue and 503
 * otherwise (connecting, reconnecting, draining); `GET /metrics` answers the
 * Prometheus text exposition.
 *
 * Run as a program, it is the worker image's health check: it exits 0 when
 * the worker in the same container answers `GET /healthz` with 200 within
 * 2 s, else 1 with one line saying why. The image has no shell or curl, so
 * Docker runs it with Deno:
 *
 * ```sh
 * deno run --cached-only --allow-net=127.0.0.1 --allow-env=METRICS_PORT \
 *   runtime/process/health.ts
 * ```
 *
 * @module
 */

import type { Logger } from "../../core/log.ts";
import { DEFAULT_METRICS_PORT } from "../defaults.ts";
import type { WorkerMetrics } from "../worker/observe.ts";

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

/** Options for {@linkcode startHealthServer}. */
export interface StartHealthServerOptions {
  port: number;
  metrics: WorkerMetrics;
  labels: () => { function: string; queue: string };
  consuming: () => boolean;
  log: Logger;
}

/**
 * Serves `/healthz` and `/metrics` unless the port is 0. A port in use or
 * not allowed is logged, and the worker goes on serving tasks without them:
 * its health check then fails, which is what should draw attention.
 */
export function startHealthServer(options: StartHealthServerOptions): HealthServer | undefined {
  if (options.port === 0) return undefined;
  try {
    const server = serveHealth({
      port: options.port,
      consuming: options.consuming,
      metrics: () => options.metrics.render(options.labels(), options.consuming()),
    });
    options.log.info("Serving /healthz and /metrics", { port: server.port });
    return server;
  } catch (error) {
    const reason = error instanceof Deno.errors.AddrInUse
      ? "it is in use"
      : error instanceof Deno.errors.NotCapable
      ? "this process may not listen there (allow it with --allow-net)"
      : (error as Error).message;
    options.log.error(
      `Cannot serve /healthz and /metrics on port ${options.port} as ${reason}: set METRICS_PORT to a free port, or 0 to turn them off`,
      { port: options.port },
    );
    return undefined;
  }
}

/** Checks `http://127.0.0.1:<port>/healthz`; resolves with the exit code and a reason. */
export async function checkHealth(
  port: number,
  timeoutMs = 2000,
): Promise<{ code: 0 | 1; message: string }> {
  if (port === 0) {
    return { code: 1, message: "Cannot check health as METRICS_PORT is 0: set it to a port" };
  }
  const url = `http://127.0.0.1:${port}/healthz`;
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    const body = (await response.text()).trim();
    return response.status === 200
      ? { code: 0, message: `healthy: ${body}` }
      : { code: 1, message: `unhealthy: ${url} answered ${response.status}: ${body}` };
  } catch (error) {
    return { code: 1, message: `unhealthy: ${url} did not answer: ${(error as Error).message}` };
  }
}

if (import.meta.main) {
  const text = Deno.env.get("METRICS_PORT");
  const port = text ? Number(text) : DEFAULT_METRICS_PORT;
  const { code, message } = Number.isInteger(port) && port >= 0 && port <= 65535
    ? await checkHealth(port)
    : { code: 1, message: `Cannot check health as METRICS_PORT is '${text}': set it to a port` };
  console.log(message);
  Deno.exit(code);
}
