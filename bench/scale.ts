/**
 * Fan-outs of any size in bounded memory, against one tuned worker on the
 * product's default queue type:
 *
 * - the client's stream (`TaskClient.stream()`, a window of 1,000): a
 *   million calls (the caller's peak resident memory, and its throughput
 *   against the same caller's on 10,000);
 * - `deno task dispatch` of a scenario of 100,000 tasks, writing its JSON
 *   document, JUnit XML and HTML report (its peak resident memory, and
 *   that each file holds every task);
 * - `deno task load --tasks 1000000` (its peak resident memory).
 *
 * The tools run as `deno task` runs them (their command in deno.json), on a
 * configuration of the benchmark's own whose registry routes task_a to the
 * benchmark's queue.
 *
 * @module
 */

import { join } from "node:path";
import type { StreamSample } from "./client.ts";
import { target } from "./core.ts";
import type { BenchServers } from "./servers.ts";

/** A tool's run: its tasks, its wall time and its peak resident memory. */
export interface ToolRun {
  tasks: number;
  ms: number;
  peak_rss_mb: number;
}

/** What {@linkcode measureScale} found. */
export interface ScaleFigures {
  window: number;
  /** Streams of the smaller count, in the same caller before the big one. */
  stream_small: StreamSample[];
  stream_small_count: number;
  stream_big: StreamSample;
  stream_big_count: number;
  dispatch: ToolRun & { passed: number; files_mb: Record<string, number> };
  load: ToolRun & { succeeded: number };
}

/** Options of {@linkcode measureScale}. */
export interface ScaleOptions {
  quick: boolean;
  prefetch: number;
  reps: number;
  say: (line: string) => void;
}

/** The longest a tool of the benchmark may run: a million tasks at 2,000 a second. */
const TOOL_TIMEOUT_MS = 600_000;

/** `deno task <name>`'s arguments after `deno`, from deno.json. */
async function taskArgs(name: string): Promise<string[]> {
  const config = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));
  const command: string = config.tasks[name].command;
  const [deno, ...args] = command.split(/\s+/);
  if (deno !== "deno") throw new Error(`deno.json: task ${name} does not run deno: ${command}`);
  return args;
}

/** A process's peak resident memory so far (VmHWM), in MiB; 0 once it is gone. */
function peakRssMb(pid: number): number {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    return Number(status.match(/^VmHWM:\s+(\d+) kB/m)?.[1] ?? 0) / 1024;
  } catch {
    return 0;
  }
}

/**
 * Runs `deno <args>` to its end, reading its peak resident memory every
 * 100 ms; rejects when it fails or runs past {@linkcode TOOL_TIMEOUT_MS}.
 */
async function runTool(args: string[], what: string): Promise<{ ms: number; peakMb: number }> {
  const started = performance.now();
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd: new URL("../", import.meta.url),
    stdout: "null",
    stderr: "piped",
    signal: AbortSignal.timeout(TOOL_TIMEOUT_MS),
  }).spawn();
  let peakMb = 0;
  const watch = setInterval(() => peakMb = Math.max(peakMb, peakRssMb(child.pid)), 100);
  try {
    const [status, stderr] = await Promise.all([
      child.status,
      new Response(child.stderr).text(),
    ]);
    if (!status.success) {
      throw new Error(`${what} failed (exit ${status.code}): ${stderr.trim().slice(-2000)}`);
    }
  } finally {
    clearInterval(watch);
  }
  return { ms: performance.now() - started, peakMb };
}

/** A configuration with one scenario of `count` no-op task_a, routed to `queue`. */
async function writeConfig(dir: string, queue: string, count: number): Promise<string> {
  await Deno.mkdir(join(dir, "functions"), { recursive: true });
  await Deno.writeTextFile(
    join(dir, "functions", "registry.yaml"),
    `functions:\n  task_a:\n    queue: ${queue}\n`,
  );
  const config = join(dir, "test-config.yml");
  await Deno.writeTextFile(
    config,
    [
      "name: Benchmark at scale",
      "default_scenario: scale",
      "defaults:",
      "  timeout_ms: 300000",
      "  retries: 0",
      "scenarios:",
      "  scale:",
      `    description: ${count} no-op tasks`,
      "    tasks:",
      "      - task: task_a",
      "        payload: { work_ms: 0 }",
      `        count: ${count}`,
      "",
    ].join("\n"),
  );
  return config;
}

/** Measures the fan-outs at scale; stops their servers after. */
export async function measureScale(
  servers: BenchServers,
  options: ScaleOptions,
): Promise<ScaleFigures> {
  const { say, quick } = options;
  const counts = quick
    ? { small: 2000, big: 20_000, dispatch: 2000, load: 5000 }
    : { small: 10_000, big: 1_000_000, dispatch: 100_000, load: 1_000_000 };
  const window = 1000;
  const queue = servers.queue("scale");
  await servers.worker({ fn: "task_a", queue, queueType: "quorum", window: options.prefetch });
  const dir = await Deno.makeTempDir({ prefix: "bench-scale-" });
  try {
    // A caller of its own: its peak memory is the streams' alone.
    const caller = await servers.driver("product", { task_a: queue });
    const stream = (count: number) =>
      caller.stream({ kind: "stream", target: target("task_a", 0), count, window });
    say(`Stream of ${counts.small} calls, ${Math.max(2, Math.min(3, options.reps))} times...`);
    await stream(counts.small);
    const small: StreamSample[] = [];
    for (let i = 0; i < Math.max(2, Math.min(3, options.reps)); i++) {
      small.push(await stream(counts.small));
    }
    say(`Stream of ${counts.big} calls...`);
    const big = await stream(counts.big);

    const config = await writeConfig(dir, queue, counts.dispatch);
    const broker = ["--broker", servers.url, "--config", config];
    say(`deno task dispatch of ${counts.dispatch} tasks, with every report...`);
    const files = {
      json: join(dir, "run.json"),
      junit: join(dir, "run.xml"),
      html: join(dir, "run.html"),
    };
    const dispatched = await runTool([
      ...await taskArgs("dispatch"),
      ...broker,
      "--quiet",
      "--out",
      files.json,
      "--junit",
      files.junit,
      "--html",
      files.html,
    ], "deno task dispatch");
    const document = JSON.parse(await Deno.readTextFile(files.json));
    if (document.tasks.length !== counts.dispatch) {
      throw new Error(
        `The run's document holds ${document.tasks.length} of ${counts.dispatch} tasks`,
      );
    }
    const junit = await Deno.readTextFile(files.junit);
    const html = await Deno.readTextFile(files.html);
    const testcases = junit.match(/<testcase /g)?.length ?? 0;
    const rows = html.match(/<tr(?: class="failed")?><td>task_a#/g)?.length ?? 0;
    if (testcases !== counts.dispatch || rows !== counts.dispatch) {
      throw new Error(
        `The reports hold ${testcases} test cases and ${rows} rows of ${counts.dispatch} tasks`,
      );
    }
    const size = async (path: string) => Math.round((await Deno.stat(path)).size / 1e5) / 10;

    say(`deno task load --tasks ${counts.load}...`);
    const loaded = await runTool([
      ...await taskArgs("load"),
      ...broker,
      "--function",
      "task_a",
      "--work-ms",
      "0",
      "--tasks",
      String(counts.load),
      "--concurrency",
      String(window),
      "--no-save",
    ], "deno task load");
    return {
      window,
      stream_small: small,
      stream_small_count: counts.small,
      stream_big: big,
      stream_big_count: counts.big,
      dispatch: {
        tasks: counts.dispatch,
        ms: Math.round(dispatched.ms),
        peak_rss_mb: Math.round(dispatched.peakMb),
        passed: document.summary.passed,
        files_mb: {
          json: await size(files.json),
          junit: await size(files.junit),
          html: await size(files.html),
        },
      },
      load: {
        tasks: counts.load,
        ms: Math.round(loaded.ms),
        peak_rss_mb: Math.round(loaded.peakMb),
        succeeded: counts.load,
      },
    };
  } finally {
    await servers.stopAll();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
