/**
 * Runs the project's programs as real processes for integration tests, and
 * follows their output line by line.
 *
 * @module
 */

const ROOT = new URL("../", import.meta.url);

/** A running process and the lines it has printed so far. */
export interface RunningProcess {
  child: Deno.ChildProcess;
  /** Every line of stdout and stderr, in arrival order. */
  lines: string[];
  /** Resolves with the first line matching `pattern`, or fails after `timeoutMs`. */
  waitForLine(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** Sends a signal and resolves with the exit code. */
  stop(signal?: Deno.Signal): Promise<number>;
}

async function follow(stream: ReadableStream<Uint8Array>, lines: string[], notify: () => void) {
  let rest = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    const parts = (rest + chunk).split("\n");
    rest = parts.pop()!;
    lines.push(...parts);
    notify();
  }
  if (rest) lines.push(rest);
  notify();
}

/** Starts `deno <args>` in the project root with extra environment variables. */
export function startDeno(args: string[], env: Record<string, string> = {}): RunningProcess {
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    env: { NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  const listeners = new Set<() => void>();
  const notify = () => listeners.forEach((listener) => listener());
  const done = Promise.all([
    follow(child.stdout, lines, notify),
    follow(child.stderr, lines, notify),
  ]);
  return {
    child,
    lines,
    waitForLine(pattern, timeoutMs = 15_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const line = lines.find((l) => pattern.test(l));
          if (line !== undefined) {
            cleanup();
            resolve(line);
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(
            new Error(`No line matching ${pattern} within ${timeoutMs} ms:\n${lines.join("\n")}`),
          );
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          listeners.delete(check);
        };
        listeners.add(check);
        check();
      });
    },
    async stop(signal: Deno.Signal = "SIGTERM") {
      try {
        child.kill(signal);
      } catch {
        // Already exited.
      }
      const status = await child.status;
      await done;
      return status.code;
    },
  };
}

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

/**
 * The permissions a worker process needs on the host, as `deno task worker`
 * grants them, plus reading `extraReads` (such as a password file).
 */
export function workerPermissions(extraReads: string[] = []): string[] {
  return [
    "--no-prompt",
    "--unstable-worker-options",
    "--allow-net",
    "--allow-env",
    `--allow-read=${["functions", "tests/fixtures", ...extraReads].join(",")}`,
    "--allow-sys=hostname",
  ];
}

/** The worker runtime's entry point. */
export const WORKER_MAIN = "functions/_runtime/worker/main.ts";

/**
 * Starts the function `name` (a name under functions/, or the path of a
 * module) as a worker process, and waits until it consumes. `/healthz` and
 * `/metrics` are off unless `env` sets METRICS_PORT, so that workers started
 * together do not compete for one port.
 */
export async function startWorkerProcess(
  name: string,
  env: Record<string, string>,
  denoArgs: string[] = [],
): Promise<RunningProcess> {
  const worker = startDeno(["run", ...workerPermissions(), ...denoArgs, WORKER_MAIN, name], {
    METRICS_PORT: "0",
    ...env,
  });
  try {
    await worker.waitForLine(/"msg":"Consuming"/);
  } catch (error) {
    await worker.stop("SIGKILL");
    throw error;
  }
  return worker;
}
