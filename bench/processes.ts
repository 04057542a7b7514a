/**
 * Runs the project's programs as child processes and follows their output
 * line by line: the benchmark starts its workers so, and the tests reuse it
 * (`tests/_processes.ts`). Nothing here belongs to the tests: the benchmark
 * is a tool of its own.
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

/**
 * The arguments of `deno` that run `name` as a worker on the host, with the
 * permissions of `deno task worker` (deno.json), plus reading `files` (its
 * secret files, say).
 */
export function workerArgs(name: string, files: string[] = []): string[] {
  return [
    "run",
    "--no-prompt",
    "--unstable-worker-options",
    "--allow-net",
    "--allow-env",
    `--allow-read=${["functions", ...files].join(",")}`,
    "--allow-sys=hostname",
    "functions/_runtime/worker/main.ts",
    name,
  ];
}

/** The log line a worker prints once it consumes its queue. */
export const CONSUMING = /"msg":"Consuming"/;

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
