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

/** The worker runtime's entry point. */
export const WORKER_MAIN = "runtime/worker/main.ts";

/**
 * The permissions of `deno task worker`, plus reading the test fixtures and
 * `extraReads` (such as a password file), for `deno run` before {@linkcode WORKER_MAIN}.
 */
export function workerPermissions(extraReads: string[] = []): string[] {
  const args = workerArgs("", ["tests/fixtures", ...extraReads]);
  return args.slice(1, args.indexOf(WORKER_MAIN));
}

/**
 * Starts the function `name` (a name under functions/, or the path of a
 * module such as a test fixture) as a worker process, with `denoArgs` such as
 * V8 flags, and waits until it consumes. `/healthz` and `/metrics` are off
 * unless `env` sets METRICS_PORT, so that workers started together do not
 * compete for one port.
 */
export async function startWorkerProcess(
  name: string,
  env: Record<string, string>,
  denoArgs: string[] = [],
): Promise<RunningProcess> {
  const args = workerArgs(name, ["tests/fixtures"]);
  args.splice(1, 0, ...denoArgs);
  const worker = startDeno(args, { METRICS_PORT: "0", ...env });
  try {
    // A loaded machine (other suites share it) can take long to start a worker.
    await worker.waitForLine(CONSUMING, 30_000);
  } catch (error) {
    await worker.stop("SIGKILL");
    throw error;
  }
  return worker;
}
