/**
 * Processes for the peers: start one and follow its output, run one to its
 * end, and read the memory of a process tree from /proc.
 *
 * @module
 */

import { followLines, LineWatch } from "../processes.ts";
import { parseParentPid, parseVmRssKb } from "./_figures.ts";

/** A started process and what it has printed so far. */
export interface Spawned {
  child: Deno.ChildProcess;
  /** Lines of stdout, in arrival order. */
  out: string[];
  /** Lines of stderr, in arrival order. */
  err: string[];
  /** Resolves with the exit status once both output streams have ended. */
  done: Promise<Deno.CommandStatus>;
  /**
   * Resolves with the first stdout line matching `pattern`; rejects after
   * `timeoutMs` or as soon as the process exits without printing it.
   */
  waitForLine(pattern: RegExp, timeoutMs: number): Promise<string>;
  /** Sends SIGTERM, then SIGKILL after `graceMs`, and resolves once it has exited. */
  stop(graceMs?: number): Promise<void>;
  /**
   * Resolves with the exit status; past `timeoutMs` it stops the process
   * and rejects, naming `what` and its last output: a peer that hangs (on
   * a broker queue that stopped answering, say) must not hang the bench.
   */
  finish(what: string, timeoutMs: number): Promise<Deno.CommandStatus>;
}

/** Options of {@linkcode spawn}. */
export interface SpawnOptions {
  env?: Record<string, string>;
  cwd?: string | URL;
  /** Kills the process (SIGTERM) when aborted. */
  signal?: AbortSignal;
  /** Called with each stderr line as it arrives. */
  onErrLine?: (line: string) => void;
}

/** The last `count` lines of a process's output, for error messages. */
export function tail(spawned: Pick<Spawned, "out" | "err">, count = 20): string {
  return [...spawned.out, ...spawned.err].slice(-count).join("\n");
}

/** Starts `command` with piped output. */
export function spawn(command: string, args: string[], options: SpawnOptions = {}): Spawned {
  const child = new Deno.Command(command, {
    args,
    env: options.env,
    cwd: options.cwd,
    signal: options.signal,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const out: string[] = [];
  const err: string[] = [];
  const watch = new LineWatch(out);
  const done = Promise.all([
    followLines(child.stdout, out, watch.notify),
    followLines(child.stderr, err, (line) => {
      options.onErrLine?.(line);
      watch.notify();
    }),
  ]).then(() => child.status);
  let exited = false;
  done.finally(() => {
    exited = true;
    watch.notify();
  });
  return {
    child,
    out,
    err,
    done,
    waitForLine(pattern, timeoutMs) {
      return watch.waitFor(
        pattern,
        timeoutMs,
        (reason) =>
          reason === "exited"
            ? `Cannot see ${pattern} from ${command}: it exited\n${tail({ out, err })}`
            : `Cannot see ${pattern} from ${command} within ${timeoutMs} ms\n${tail({ out, err })}`,
        () => exited,
      );
    },
    async finish(what, timeoutMs) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<"late">((resolve) =>
        timer = setTimeout(() => resolve("late"), timeoutMs)
      );
      const status = await Promise.race([done, late]).finally(() => clearTimeout(timer));
      if (status !== "late") return status;
      await this.stop(2000);
      throw new Error(
        `${what} did not finish within ${
          Math.round(timeoutMs / 1000)
        } s, so it was stopped; its last output:\n${tail({ out, err })}`,
      );
    },
    async stop(graceMs = 10_000) {
      const kill = (signal: Deno.Signal) => {
        try {
          child.kill(signal);
        } catch {
          // Already exited.
        }
      };
      kill("SIGTERM");
      const timer = setTimeout(() => kill("SIGKILL"), graceMs);
      await done.catch(() => {});
      clearTimeout(timer);
    },
  };
}

/**
 * How long a peer's client may take for all its runs before it is stopped:
 * a minute, plus 5 ms per task and a second per seed run (so at least 200
 * tasks/s; Celery, the slower peer, does about 500 here).
 */
export function peerClientTimeoutMs(
  options: { sizes: number[]; seedRuns: number; runs: number },
): number {
  const sizes = options.sizes.reduce((sum, size) => sum + size, 0);
  const tasks = (options.runs + 1) * sizes;
  return 60_000 + tasks * 5 + (options.seedRuns + 1) * 1000;
}

/** The output of a process run to its end. */
export interface Finished {
  success: boolean;
  stdout: string;
  stderr: string;
}

/**
 * Runs `command` to its end; a missing command counts as a failure, with the
 * reason in `stderr`, so that availability checks need no try/catch.
 */
export async function run(
  command: string,
  args: string[],
  options: { env?: Record<string, string>; cwd?: string | URL; timeoutMs?: number } = {},
): Promise<Finished> {
  try {
    const output = await new Deno.Command(command, {
      args,
      env: options.env,
      cwd: options.cwd,
      stdin: "null",
      signal: AbortSignal.timeout(options.timeoutMs ?? 30_000),
    }).output();
    const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes).trim();
    return {
      success: output.success,
      stdout: decode(output.stdout),
      stderr: decode(output.stderr),
    };
  } catch (error) {
    return { success: false, stdout: "", stderr: (error as Error).message };
  }
}

/** `pid` and all its descendants, from the parent ids in /proc. */
export function processTree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    let stat;
    try {
      stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
    } catch {
      continue; // Exited while we looked.
    }
    const parent = parseParentPid(stat);
    children.set(parent, [...(children.get(parent) ?? []), Number(entry.name)]);
  }
  const tree = [pid];
  for (let i = 0; i < tree.length; i++) tree.push(...(children.get(tree[i]) ?? []));
  return tree;
}

/** The resident memory of `pid` and its descendants, in MB (MiB, like the product's bench). */
export function treeRssMb(pid: number): number {
  let kb = 0;
  for (const member of processTree(pid)) {
    try {
      kb += parseVmRssKb(Deno.readTextFileSync(`/proc/${member}/status`));
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error; // else: exited meanwhile
    }
  }
  return kb / 1024;
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}
