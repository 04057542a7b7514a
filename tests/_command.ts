/**
 * Every process a test starts gets a deadline. Deno's test runner has none
 * of its own, so a child that hangs (a broker that never answers, a build
 * that waits on the network, a fixture that stops crashing) would hold the
 * run until CI kills it, without a word on what it was waiting for. Here a
 * child that outlives its deadline is killed with its whole process group
 * (`deno task` and `docker compose` start children of their own), and the
 * test fails with a {@linkcode DeadlineError} that names the command, the
 * deadline and the output it printed so far.
 *
 * @module
 */

const decoder = new TextDecoder();
/** How much of a timed-out command's output its error quotes: the end, where it stopped. */
const OUTPUT_TAIL_CHARS = 4000;

/** A process or wait that a test started did not finish within its deadline. */
export class DeadlineError extends Error {
  /**
   * @param what What the test was waiting for, such as a command line.
   * @param timeoutMs The deadline it missed.
   * @param output What the process printed before it was killed.
   */
  constructor(readonly what: string, readonly timeoutMs: number, readonly output = "") {
    const tail = output.length > OUTPUT_TAIL_CHARS
      ? `…${output.slice(-OUTPUT_TAIL_CHARS)}`
      : output;
    super(
      `Timed out after ${timeoutMs} ms waiting for ${what}: killed it` +
        (tail.trim() ? `. Its output so far:\n${tail}` : ", and it printed nothing"),
    );
    this.name = "DeadlineError";
  }
}

/**
 * Resolves as `promise` does, or rejects with a {@linkcode DeadlineError}
 * naming `what` once `timeoutMs` has passed, after calling `onTimeout` (to
 * kill what the promise waits on, say).
 */
export async function withDeadline<T>(
  promise: Promise<T>,
  timeoutMs: number,
  what: string,
  onTimeout: () => void | Promise<void> = () => {},
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(async () => {
      try {
        await onTimeout();
      } finally {
        reject(new DeadlineError(what, timeoutMs));
      }
    }, timeoutMs);
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}

/** Options for {@linkcode runCommand}. */
export interface RunCommandOptions {
  /** The working directory. @default {the current one} */
  cwd?: string | URL;
  /** Variables added to the inherited environment. */
  env?: Record<string, string>;
  /** How long the command may run before it is killed and the test fails. */
  timeoutMs: number;
  /** How the error names the command. @default {the command line} */
  what?: string;
}

/** A finished command's exit code and output. */
export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Kills a detached child and everything it started (its process group). */
export function killGroup(child: Deno.ChildProcess): void {
  try {
    Deno.kill(-child.pid, "SIGKILL");
  } catch {
    // The group is gone already; the child itself may not be.
    try {
      child.kill("SIGKILL");
    } catch {
      // Exited.
    }
  }
}

async function collect(stream: ReadableStream<Uint8Array>, into: string[]): Promise<void> {
  for await (const chunk of stream) into.push(decoder.decode(chunk, { stream: true }));
}

/**
 * Runs `command args` to completion and returns its exit code and output;
 * rejects with a {@linkcode DeadlineError} if it is still running after
 * `options.timeoutMs`, once it and its children are killed.
 */
export async function runCommand(
  command: string,
  args: string[],
  options: RunCommandOptions,
): Promise<CommandResult> {
  const what = options.what ?? `\`${[command, ...args].join(" ")}\``;
  const child = new Deno.Command(command, {
    args,
    cwd: options.cwd,
    env: options.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    // A process group of its own, so that a timeout kills the grandchildren too.
    detached: true,
  }).spawn();
  const stdout: string[] = [];
  const stderr: string[] = [];
  const streams = Promise.all([collect(child.stdout, stdout), collect(child.stderr, stderr)]);
  const finished = Promise.all([child.status, streams]).then(([status]) => status);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<"expired">((resolve) => {
    timer = setTimeout(() => resolve("expired"), options.timeoutMs);
  });
  try {
    const outcome = await Promise.race([finished, expired]);
    if (outcome === "expired") {
      killGroup(child);
      // The killed group closes its pipes; a grandchild that left the group may not.
      await Promise.race([finished, new Promise((resolve) => setTimeout(resolve, 1000))]);
      throw new DeadlineError(what, options.timeoutMs, stdout.join("") + stderr.join(""));
    }
    return { code: outcome.code, stdout: stdout.join(""), stderr: stderr.join("") };
  } finally {
    clearTimeout(timer);
  }
}
