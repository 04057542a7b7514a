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
    `--allow-read=${["functions", "runtime", "core", ...files].join(",")}`,
    "--allow-sys=hostname",
    "runtime/process/main.ts",
    name,
  ];
}

/** The log line a worker prints once it consumes its queue. */
export const CONSUMING = /"msg":"Consuming"/;

/** Reads `stream` line by line into `lines`, calling `notify` with each line. */
export async function followLines(
  stream: ReadableStream<Uint8Array>,
  lines: string[],
  notify: (line: string) => void,
): Promise<void> {
  let rest = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    const parts = (rest + chunk).split("\n");
    rest = parts.pop()!;
    for (const part of parts) {
      lines.push(part);
      notify(part);
    }
  }
  if (rest) {
    lines.push(rest);
    notify(rest);
  }
}

/** Output lines as they arrive, and who waits for which. */
export class LineWatch {
  readonly #listeners = new Set<() => void>();

  /** @param lines The lines to search, growing as they arrive. */
  constructor(readonly lines: string[]) {}

  /** Tells the waiters that a line arrived or the process ended. */
  notify = (): void => this.#listeners.forEach((listener) => listener());

  /**
   * Resolves with the first line matching `pattern`; rejects after
   * `timeoutMs`, or once `gone()` says no such line can come any more, with
   * the message `why` gives.
   */
  waitFor(
    pattern: RegExp,
    timeoutMs: number,
    why: (reason: "timeout" | "exited") => string,
    gone: () => boolean = () => false,
  ): Promise<string> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const line = this.lines.find((l) => pattern.test(l));
        if (line !== undefined) {
          cleanup();
          resolve(line);
        } else if (gone()) {
          cleanup();
          reject(new Error(why("exited")));
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(why("timeout")));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.#listeners.delete(check);
      };
      this.#listeners.add(check);
      check();
    });
  }
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
  const watch = new LineWatch(lines);
  const done = Promise.all([
    followLines(child.stdout, lines, watch.notify),
    followLines(child.stderr, lines, watch.notify),
  ]);
  return {
    child,
    lines,
    waitForLine(pattern, timeoutMs = 15_000) {
      return watch.waitFor(
        pattern,
        timeoutMs,
        () => `No line matching ${pattern} within ${timeoutMs} ms:\n${lines.join("\n")}`,
      );
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
