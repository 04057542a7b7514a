/**
 * Horizontal scaling on the compose stack: `--scale worker-a=4` spreads 40
 * tasks of 500 ms over four replicas, close to the ideal 5 s, while one
 * replica takes about 20 s, each replica taking one task at a time
 * (CONCURRENCY=1, as for CPU-bound work). The load tester's per-worker counts show that
 * each replica did its share.
 */

import assert from "node:assert/strict";
import { connectWhenUp, createStack, type Stack } from "./_compose.ts";
import { NEEDS_DOCKER } from "./_infra.ts";
import { waitFor } from "./_helpers.ts";
import { runDeno } from "./_processes.ts";
import { holdEngine } from "./_engine_lock.ts";

interface LoadDocument {
  durationMs: number;
  succeeded: number;
  perWorker: Record<string, number>;
}

async function load(stack: Stack): Promise<LoadDocument> {
  const run = await runDeno([
    "task",
    "load",
    "--broker",
    `amqp://dispatcher@127.0.0.1:${stack.amqpPort}`,
    "--function",
    "task_a",
    "--work-ms",
    "500",
    "--tasks",
    "40",
    "--concurrency",
    "40",
    "--no-save",
    "--json",
  ], stack.env);
  assert.equal(run.code, 0, run.stderr);
  return JSON.parse(run.stdout);
}

Deno.test({
  name:
    "docker compose --scale worker-a=4 runs 40 tasks of 500 ms in about 5 s, one replica in 20 s",
  ignore: NEEDS_DOCKER,
  async fn() {
    await using _engine = await holdEngine("shared");
    // One task at a time per replica, as for CPU-bound work: the replicas,
    // not one worker's window, are what this measures.
    const stack = await createStack("scale", { env: { CONCURRENCY: "1" } });
    try {
      await stack.compose(["up", "-d", "--build", "--scale", "worker-a=4"]);
      const broker = await connectWhenUp(await stack.url("dispatcher"));
      const consumers = async (n: number) =>
        await waitFor(
          async () => (await broker.inspectQueue("queue_a"))?.consumers === n,
          `${n} consumers on queue_a`,
          30_000,
        );
      try {
        await consumers(4);
        const four = await load(stack);
        console.log(
          `4 replicas: ${four.durationMs} ms, per worker ${JSON.stringify(four.perWorker)}`,
        );
        assert.equal(four.succeeded, 40);
        // Lower bounds and counts, which load cannot break: 40 tasks of 500 ms
        // take at least 5 s on four replicas, and about 5 s because each took
        // its share (10; at most 13 leaves a slow replica room).
        assert.ok(four.durationMs >= 10 * 500, `${four.durationMs} ms < 10 tasks of 500 ms`);
        const counts = Object.values(four.perWorker);
        assert.equal(counts.length, 4, "four replicas answered");
        assert.ok(counts.every((n) => n > 0 && n <= 13), `each took its share: ${counts}`);

        await stack.compose(["up", "-d", "--scale", "worker-a=1"]);
        await consumers(1);
        const one = await load(stack);
        console.log(`1 replica: ${one.durationMs} ms`);
        assert.equal(one.succeeded, 40);
        assert.equal(Object.keys(one.perWorker).length, 1);
        assert.ok(one.durationMs >= 40 * 500, `one replica: ${one.durationMs} ms < 40 x 500 ms`);
        // Measured in one run, so load slows both alike: four replicas did the
        // same work at least 2.5 times as fast (4 ideally).
        assert.ok(
          one.durationMs >= 2.5 * four.durationMs,
          `one replica ${one.durationMs} ms, four ${four.durationMs} ms: under 2.5 times as fast`,
        );
      } finally {
        await broker.close();
      }
    } finally {
      await stack.down();
    }
  },
});
