/**
 * Runs the project's programs as real processes for integration tests, and
 * follows their output line by line (the process runner itself is shared
 * with the benchmark, in `bench/processes.ts`).
 *
 * @module
 */

import { CONSUMING, type RunningProcess, startDeno, workerArgs } from "../bench/processes.ts";

export { type RunningProcess, startDeno, workerArgs };

const ROOT = new URL("../", import.meta.url);

/** Runs `deno <args>` to completion; returns its exit code and output. */
export async function runDeno(args: string[], env: Record<string, string> = {}) {
  const output = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    env: { NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

/** The permissions a worker process needs on the host besides reading its code. */
export const WORKER_PERMISSIONS = ["--allow-net", "--allow-env", "--allow-sys=hostname"];

/**
 * Starts `functions/<name>.ts` as a worker process (`deno task worker
 * <name>`'s command) and waits until it consumes. `/healthz` and `/metrics`
 * are off unless `env` sets METRICS_PORT, so that workers started together
 * do not compete for one port.
 */
export async function startWorkerProcess(
  name: string,
  env: Record<string, string>,
): Promise<RunningProcess> {
  const worker = startDeno(workerArgs(name), { METRICS_PORT: "0", ...env });
  try {
    // A loaded machine (other suites share it) can take long to start a worker.
    await worker.waitForLine(CONSUMING, 30_000);
  } catch (error) {
    await worker.stop("SIGKILL");
    throw error;
  }
  return worker;
}
