/**
 * The worker image's health check: exits 0 when the worker in the same
 * container answers `GET /healthz` with 200 within 2 s, else 1 with one line
 * saying why. The image has no shell or curl, so Docker runs it with Deno:
 *
 * ```sh
 * deno run --cached-only --allow-net=127.0.0.1 --allow-env=METRICS_PORT \
 *   runtime/healthcheck.ts
 * ```
 *
 * @module
 */

import { DEFAULT_METRICS_PORT } from "../process/settings.ts";

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
