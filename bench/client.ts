/**
 * One side of a benchmark run, as its own process so that each measures
 * like a real caller: `bare` calls the bare echo, `product` calls real
 * workers through the dispatcher's own code (the client library, and the
 * fan-out of `deno task dispatch`). Prints one JSON line per
 * repetition: `{"ms", "tps", "rss_mb", "heap_mb"}`.
 *
 *   deno run -A bench/client.ts <bare|product> <url> <reps> <queue>:<task>:<work_ms>...
 *
 * Every target of a repetition is called `tasks` times at once (given as
 * `--tasks N`, default 1), all targets together.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { connect } from "@task-system/client";
import { dispatchAll } from "../dispatcher/dispatch_all.ts";
import type { TaskSpec } from "../dispatcher/config/load_config.ts";
import { openEchoClient } from "./bare_echo.ts";

interface Target {
  queue: string;
  task: string;
  workMs: number;
}

function parseTarget(text: string): Target {
  const [queue, task, workMs] = text.split(":");
  return { queue, task, workMs: Number(workMs) };
}

const { values, positionals } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: { tasks: { type: "string", default: "1" } },
});
const [impl, url, repsText, ...targetTexts] = positionals;
const reps = Number(repsText);
const perTarget = Number(values.tasks);
const targets = targetTexts.map(parseTarget);

const mb = (bytes: number) => Math.round(bytes / 1024 / 1024 * 10) / 10;

/**
 * Prints a repetition's figures: the resident memory as the run ends, then
 * the live heap after a full collection (with --expose-gc), which grows
 * only if something leaks.
 */
function report(ms: number, tasks: number) {
  const rss = mb(Deno.memoryUsage().rss);
  (globalThis as { gc?: () => void }).gc?.();
  const heap = mb(Deno.memoryUsage().heapUsed);
  console.log(JSON.stringify({ ms, tps: tasks / (ms / 1000), rss_mb: rss, heap_mb: heap }));
}

if (impl === "bare") {
  const client = await openEchoClient(url);
  // One untimed round first, on each side alike: JIT warm-up is not throughput.
  for (let rep = -1; rep < reps; rep++) {
    const started = performance.now();
    await Promise.all(
      targets.map((t) =>
        client.callAll(t.queue, Array.from({ length: perTarget }, () => ({ work_ms: t.workMs })))
      ),
    );
    if (rep >= 0) report(performance.now() - started, perTarget * targets.length);
  }
  await client.close();
} else if (impl === "product") {
  const client = await connect({
    url,
    functions: Object.fromEntries(targets.map((t) => [t.task, t.queue])),
    connectionName: "bench",
  });
  const specs: TaskSpec[] = targets.flatMap((t) =>
    Array.from({ length: perTarget }, () => ({
      label: t.task,
      task: t.task,
      queue: t.queue,
      payload: { work_ms: t.workMs },
      timeoutMs: 120_000,
      retry: {},
      expect: { status: "success" as const },
    }))
  );
  for (let rep = -1; rep < reps; rep++) {
    const started = performance.now();
    const outcomes = await dispatchAll(client, specs);
    const failed = outcomes.filter((o) => !o.passed);
    if (failed.length > 0) throw new Error(`${failed.length} tasks failed: ${failed[0].problem}`);
    if (rep >= 0) report(performance.now() - started, specs.length);
  }
  await client.close();
} else {
  console.error(
    "Usage: deno run -A bench/client.ts <bare|product> <url> <reps> <queue>:<task>:<work_ms>...",
  );
  Deno.exit(2);
}
