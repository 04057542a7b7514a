/**
 * A scheduler replica's `GET /healthz`, for orchestrators: 200 while it is
 * connected to the broker (`ok: active` for the replica that fires, `ok:
 * standby` for the others, which are as healthy), 503 while it connects.
 *
 * Run as a program, it is the scheduler image's health check (the image has
 * no shell or curl): exit 0 when `GET http://127.0.0.1:<port>/healthz`
 * answers 200 within 2 s, else 1, with one line saying why.
 *
 * ```sh
 * deno run --cached-only --allow-net=127.0.0.1 scheduler/health.ts 9465
 * ```
 *
 * @module
 */

import type { ReplicaState } from "./run_scheduler.ts";

/** The port of `/healthz` in the scheduler's image and deployments. */
export const SCHEDULER_HEALTH_PORT = 9465;

/** Answers one request; exported for tests that need no socket. */
export function handleHealthRequest(request: Request, state: ReplicaState): Response {
  const headers = { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" };
  const { pathname } = new URL(request.url);
  if (pathname !== "/healthz") return new Response("Not found: use /healthz\n", { status: 404 });
  if (request.method !== "GET" && request.method !== "HEAD") {
    return new Response(`Cannot ${request.method} /healthz: use GET\n`, {
      status: 405,
      headers: { ...headers, allow: "GET, HEAD" },
    });
  }
  if (!state.connected) return new Response("not connected\n", { status: 503, headers });
  return new Response(`ok: ${state.active ? "active" : "standby"}\n`, { headers });
}

/** Serves `/healthz` on `port` (0: a free one); throws when it cannot listen there. */
export function serveHealth(
  port: number,
  state: ReplicaState,
): { port: number; shutdown(): Promise<void> } {
  const server = Deno.serve(
    { port, hostname: "0.0.0.0", onListen: () => {} },
    (request) => handleHealthRequest(request, state),
  );
  return { port: server.addr.port, shutdown: () => server.shutdown() };
}

/** Checks the replica on this machine's `port`; the exit code and why. */
export async function checkHealth(port: number): Promise<{ code: 0 | 1; message: string }> {
  const url = `http://127.0.0.1:${port}/healthz`;
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(2000) });
    const body = (await response.text()).trim();
    return response.status === 200
      ? { code: 0, message: `healthy: ${body}` }
      : { code: 1, message: `unhealthy: ${url} answered ${response.status}: ${body}` };
  } catch (error) {
    return { code: 1, message: `unhealthy: ${url} did not answer: ${(error as Error).message}` };
  }
}

if (import.meta.main) {
  const text = Deno.args[0] ?? String(SCHEDULER_HEALTH_PORT);
  const port = Number(text);
  const { code, message } = Number.isInteger(port) && port > 0 && port <= 65535
    ? await checkHealth(port)
    : { code: 1, message: `Cannot check health on port '${text}': give a port from 1 to 65535` };
  console.log(message);
  Deno.exit(code);
}
