/**
 * Runs the project's programs as real processes for integration tests, and
 * follows their output line by line (the process runner itself is shared
 * with the benchmark, in `bench/processes.ts`).
 *
 * @module
 */

import { CONSUMING, type RunningProcess, startDeno, workerArgs } from "../bench/processes.ts";
import { type CommandResult, DeadlineError, runCommand, withDeadline } from "./_command.ts";

export { type RunningProcess, startDeno, workerArgs };

const ROOT = new URL("../", import.meta.url);

/**
 * How long {@linkcode runDeno} lets a command run by default: generous for a
 * loaded machine, and far below CI's limit, so a hang fails the test.
 */
export const RUN_DENO_TIMEOUT_MS = 300_000;

/** Options for {@linkcode runDeno}. */
export interface RunDenoOptions {
  /** How long it may run before it is killed and the test fails. @default {RUN_DENO_TIMEOUT_MS} */
  timeoutMs?: number;
}

/**
 * Runs `deno <args>` to completion; returns its exit code and output, or
 * fails with a `DeadlineError` naming the command if it outlives its deadline.
 */
export function runDeno(
  args: string[],
  env: Record<string, string> = {},
  options: RunDenoOptions = {},
): Promise<CommandResult> {
  return runCommand(Deno.execPath(), args, {
    cwd: ROOT,
    env: { NO_COLOR: "1", ...env },
    timeoutMs: options.timeoutMs ?? RUN_DENO_TIMEOUT_MS,
    what: `\`deno ${args.join(" ")}\``,
  });
}

/**
 * Waits for a process that {@linkcode startDeno} started to exit, at most
 * `timeoutMs`; past it, kills the process and fails naming `what`.
 */
export async function exitWithin(
  process: RunningProcess,
  timeoutMs: number,
  what: string,
): Promise<Deno.CommandStatus> {
  try {
    return await withDeadline(process.child.status, timeoutMs, what, () => {
      try {
        process.child.kill("SIGKILL");
      } catch {
        // Exited meanwhile.
      }
    });
  } catch (error) {
    if (!(error instanceof DeadlineError)) throw error;
    throw new DeadlineError(what, timeoutMs, process.lines.join("\n"));
  }
}

/** The worker runtime's entry point. */
export const WORKER_MAIN = "runtime/process/main.ts";

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
