// The BullMQ side of `deno task bench --peers`: one worker process at the
// given concurrency. A job's data says how long to sleep ({ ms }); no data
// means a no-op. Prints "ready" when the worker emits 'ready', that is when
// both its Redis connections are up and it starts fetching jobs.
//
// Environment: BULLMQ_PREFIX (the npm --prefix holding bullmq and ioredis),
// REDIS_PORT, QUEUE, CONCURRENCY.

import { createRequire } from "node:module";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

// bullmq is installed outside the repository (see bullmq.ts), and Node's ESM
// resolver ignores NODE_PATH: resolve it from the install folder instead.
const require = createRequire(join(process.env.BULLMQ_PREFIX, "package.json"));
const { Worker } = require("bullmq");

const worker = new Worker(
  process.env.QUEUE,
  async (job) => {
    if (job.data?.ms > 0) await sleep(job.data.ms);
  },
  {
    connection: { host: "127.0.0.1", port: Number(process.env.REDIS_PORT) },
    concurrency: Number(process.env.CONCURRENCY ?? 256),
  },
);
worker.on("ready", () => console.log("ready"));
worker.on("error", (error) => console.error(error));

process.on("SIGTERM", async () => {
  await worker.close();
  process.exit(0);
});
