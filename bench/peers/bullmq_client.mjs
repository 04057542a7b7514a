// The BullMQ client of `deno task bench --peers`: times the benchmark's shapes
// against a running bullmq_worker.mjs and prints one JSON line on stdout:
// { "tps": { "<size>": [tasks/s per run] }, "seed_ms": [wall ms per run],
//   "open": { "50": { rate, sent, tps, p50, p99, max }, "80": ... } }.
// Progress goes to stderr, with "cpu-mark begin" and "cpu-mark end <tasks>"
// around the timed runs of the largest size, for the parent to take the
// processes' CPU time between them.
//
// Environment: BULLMQ_PREFIX, REDIS_PORT, QUEUE.
// Flags: --sizes 1000,10000 --runs 5 --seed-runs 10 --open-loop-ms 5000
//
// Like the product's bench client, each shape first runs once untimed: JIT
// warm-up is not throughput.

import { createRequire } from "node:module";
import { join } from "node:path";
import { parseArgs } from "node:util";

const require = createRequire(join(process.env.BULLMQ_PREFIX, "package.json"));
const { Queue, QueueEvents } = require("bullmq");

const { values } = parseArgs({
  options: {
    sizes: { type: "string", default: "1000,10000" },
    runs: { type: "string", default: "5" },
    "seed-runs": { type: "string", default: "10" },
    "open-loop-ms": { type: "string", default: "0" },
  },
});
const sizes = values.sizes.split(",").map(Number);

const connection = { host: "127.0.0.1", port: Number(process.env.REDIS_PORT) };
const queue = new Queue(process.env.QUEUE, { connection });
// QueueEvents starts reading the event stream at "$" a moment after it says it
// is ready, and waitUntilFinished() misses a job that completes in between:
// 1 client in 4 hung here on its first run. Reading from the stream's start
// closes that gap; the stream is fresh, as every run ends by obliterating it.
const events = new QueueEvents(process.env.QUEUE, { connection, lastEventId: "0-0" });
// Every waitUntilFinished() listens for the queue's 'closing': thousands at once are expected.
queue.setMaxListeners(0);
await queue.waitUntilReady();
await events.waitUntilReady();

// A stuck job fails the run instead of hanging it.
const JOB_TIMEOUT_MS = 120_000;

/**
 * Adds one job per entry of `data`, all at once, and awaits each one's
 * result: the product's shape, where every task is its own call. So each job
 * is its own add() rather than one addBulk(), which would batch the sends in
 * a single Redis transaction the product has no counterpart of.
 * Resolves with the wall time from the first add to the last result.
 */
async function timeRun(data) {
  const started = performance.now();
  await Promise.all(data.map(async (datum) => {
    const job = await queue.add("task", datum);
    await job.waitUntilFinished(events, JOB_TIMEOUT_MS);
  }));
  const ms = performance.now() - started;
  // Completed jobs are kept (waitUntilFinished needs them): empty the queue so
  // that no run pays for the previous one's leftovers.
  await queue.obliterate({ force: true });
  return ms;
}

const noops = (count) => Array.from({ length: count }, () => ({}));

const tps = {};
for (const size of sizes) {
  tps[size] = [];
  await timeRun(noops(size));
  const largest = size === sizes.at(-1);
  if (largest) console.error("cpu-mark begin");
  for (let run = 0; run < Number(values.runs); run++) {
    const ms = await timeRun(noops(size));
    tps[size].push(size / (ms / 1000));
    console.error(`bullmq ${size} tasks: ${Math.round(size / (ms / 1000))} tasks/s`);
  }
  if (largest) console.error(`cpu-mark end ${size * Number(values.runs)}`);
}

/** The value below which `fraction` of `sorted` lie (nearest rank). */
const rank = (sorted, fraction) =>
  sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(fraction * sorted.length) - 1))];

/**
 * Adds jobs at `rate` a second for `durationMs`, whatever the results (an
 * open loop), each timed from when it was due to its result.
 */
async function openLoop(rate, durationMs) {
  const total = Math.max(1, Math.round(rate * durationMs / 1000));
  const latencies = new Float64Array(total);
  const started = performance.now();
  const calls = [];
  let sent = 0;
  while (sent < total) {
    const due = Math.min(total, Math.floor((performance.now() - started) * rate / 1000) + 1);
    while (sent < due) {
      const at = sent++;
      const dueAt = started + at * 1000 / rate;
      calls.push((async () => {
        const job = await queue.add("task", {});
        await job.waitUntilFinished(events, JOB_TIMEOUT_MS);
        latencies[at] = performance.now() - dueAt;
      })());
    }
    if (sent < total) await new Promise((resolve) => setTimeout(resolve, 5));
  }
  await Promise.all(calls);
  const ms = performance.now() - started;
  await queue.obliterate({ force: true });
  const sorted = latencies.sort();
  return {
    rate,
    sent: total,
    tps: total / (ms / 1000),
    p50: rank(sorted, 0.5),
    p99: rank(sorted, 0.99),
    max: sorted[sorted.length - 1],
  };
}
const seedMs = [];
await timeRun([{ ms: 100 }, { ms: 200 }]);
for (let run = 0; run < Number(values["seed-runs"]); run++) {
  seedMs.push(await timeRun([{ ms: 100 }, { ms: 200 }]));
}
const open = {};
const openLoopMs = Number(values["open-loop-ms"]);
if (openLoopMs > 0) {
  const runs = tps[sizes.at(-1)];
  const max = [...runs].sort((a, b) => a - b)[Math.floor(runs.length / 2)];
  for (const load of [50, 80]) {
    open[load] = await openLoop(max * load / 100, openLoopMs);
    console.error(`bullmq open loop at ${load}%: p50 ${open[load].p50.toFixed(1)} ms`);
  }
}
console.log(JSON.stringify({ tps, seed_ms: seedMs, open }));
await events.close();
await queue.close();
