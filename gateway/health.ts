/**
 * The gateway image's health check (the image has no shell or curl): exit
 * 0 when `GET http://127.0.0.1:<port>/healthz` answers 200 within 2 s,
 * else 1, with one line saying why.
 *
 * ```sh
 * deno run --cached-only --allow-net=127.0.0.1 gateway/health.ts 8080
 * ```
 *
 * @module
 */

/** Whether the gateway on `port` answers healthy; the reason when not. */
export async function checkHealth(port: number): Promise<string | undefined> {
  try {
    const response = await fetch(`http://127.0.0.1:${port}/healthz`, {
      signal: AbortSignal.timeout(2_000),
    });
    await response.body?.cancel();
    return response.status === 200 ? undefined : `GET /healthz answered ${response.status}`;
  } catch (error) {
    return `GET /healthz failed: ${(error as Error).message}`;
  }
}

if (import.meta.main) {
  const port = Number(Deno.args[0] ?? "8080");
  const problem = await checkHealth(port);
  if (problem) console.error(problem);
  Deno.exit(problem ? 1 : 0);
}
