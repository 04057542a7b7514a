// The BullMQ client of `deno task bench --peers`: times the benchmark's shapes
// against a running bullmq_worker.mjs and prints one JSON line on stdout:
// { "tps": { "<size>": [tasks/s per run] }, "seed_ms": [wall ms per run] }.
// Progress goes to stderr.
//
// Environment: BULLMQ_PREFIX, REDIS_PORT, QUEUE.
// Flags: --sizes 1000,10000 --runs 5 --seed-runs 10
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
  for (let run = 0; run < Number(values.runs); run++) {
    const ms = await timeRun(noops(size));
    tps[size].push(size / (ms / 1000));
    console.error(`bullmq ${size} tasks: ${Math.round(size / (ms / 1000))} tasks/s`);
  }
}
const seedMs = [];
await timeRun([{ ms: 100 }, { ms: 200 }]);
for (let run = 0; run < Number(values["seed-runs"]); run++) {
  seedMs.push(await timeRun([{ ms: 100 }, { ms: 200 }]));
}
console.log(JSON.stringify({ tps, seed_ms: seedMs }));
await events.close();
await queue.close();
