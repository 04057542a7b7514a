/**
 * `deno task gateway` as a process for the gateway's suites: its command,
 * and a gateway started on a free port of 127.0.0.1.
 *
 * @module
 */

import { AMQP_URL } from "./_infra.ts";
import { type RunningProcess, startDeno } from "./_processes.ts";

/** `deno task gateway`'s command, without its flags. */
export const GATEWAY_ARGS = [
  "run",
  "--allow-net",
  "--allow-env",
  "--allow-read",
  "--allow-write",
  "--allow-sys=hostname",
  "gateway/main.ts",
];

/** A gateway on `registry` and `keysFile` with `flags`, and its base URL, once it listens. */
export async function startGateway(
  registry: string,
  keysFile: string,
  flags: string[],
): Promise<{ gateway: RunningProcess; base: string }> {
  const gateway = startDeno([
    ...GATEWAY_ARGS,
    "--listen",
    "127.0.0.1:0",
    "--registry",
    registry,
    "--keys-file",
    keysFile,
    "--broker",
    AMQP_URL,
    ...flags,
  ]);
  try {
    const line = await gateway.waitForLine(/listening on http:\/\/127\.0\.0\.1:\d+/, 30_000);
    return { gateway, base: `http://127.0.0.1:${/:(\d+) as/.exec(line)![1]}` };
  } catch (error) {
    await gateway.stop("SIGKILL");
    throw new Error(`the gateway did not start:\n${gateway.lines.join("\n")}`, { cause: error });
  }
}
