import assert from "node:assert/strict";
import { defineFunction, NonRetryableError } from "../runtime/define_function.ts";
import { MemoryBroker } from "../core/broker/mod.ts";
import { startWorker } from "../runtime/worker/consumer.ts";
import { inProcessRunner } from "../runtime/handler_runner.ts";
import { latencyOf, percentile, runLoad } from "./load.ts";
import { TaskClient } from "../client/task_client.ts";

Deno.test("percentile() takes the nearest rank", () => {
  const sorted = Array.from({ length: 100 }, (_, i) => i + 1);
  assert.equal(percentile(sorted, 0.5), 50);
  assert.equal(percentile(sorted, 0.9), 90);
  assert.equal(percentile(sorted, 0.99), 99);
  assert.equal(percentile(sorted, 1), 100);
  assert.equal(percentile([7], 0.5), 7);
  assert.equal(percentile([], 0.5), 0);
});

Deno.test("latencyOf() sorts its samples and rounds", () => {
  assert.deepEqual(latencyOf([3, 1, 2, 10]), { p50: 2, p90: 10, p99: 10, max: 10, mean: 4 });
});

async function setup(concurrencyPerWorker: number) {
  let running = 0;
  let peak = 0;
  const echo = defineFunction({
    name: "echo",
    queue: "queue_echo",
    async handler(payload, context) {
      running++;
      peak = Math.max(peak, running);
      await new Promise((resolve) => setTimeout(resolve, 1));
      running--;
      if (payload.fail) throw new NonRetryableError("asked to fail");
      if (payload.flaky && context.attempt === 1) throw new Error("first attempt fails");
      return "ok";
    },
  });
  const hub = new MemoryBroker();
  const workers = [
    await startWorker(inProcessRunner(echo), hub.connect(), {
      workerId: "echo@1",
      concurrency: concurrencyPerWorker,
    }),
    await startWorker(inProcessRunner(echo), hub.connect(), {
      workerId: "echo@2",
      concurrency: concurrencyPerWorker,
    }),
  ];
  const client = await TaskClient.open(hub.connect(), {
    functions: new Map([["echo", { queue: "queue_echo", user: "echo" }]]),
  });
  return {
    client,
    peak: () => peak,
    async close() {
      await client.close();
      for (const worker of workers) await worker.stop(0);
      await hub.shutdown();
    },
  };
}

Deno.test("runLoad() keeps at most `concurrency` tasks in flight and counts per worker", async () => {
  const t = await setup(10);
  try {
    const progress: number[] = [];
    const result = await runLoad(t.client, {
      tasks: 60,
      concurrency: 4,
      targets: ["echo"],
      payload: {},
      timeoutMs: 5000,
      onProgress: (p) => progress.push(p.done),
      progressMs: 5,
    });
    assert.equal(result.tasks, 60);
    assert.equal(result.succeeded, 60);
    assert.equal(result.timeouts, 0);
    assert.deepEqual(result.errors, {});
    assert.ok(t.peak() <= 4, `at most 4 in flight, saw ${t.peak()}`);
    assert.equal(result.perWorker["echo@1"] + result.perWorker["echo@2"], 60);
    assert.ok(result.perWorker["echo@1"] > 0 && result.perWorker["echo@2"] > 0);
    assert.ok(result.throughput > 0);
    assert.ok(result.latencyMs.p50 <= result.latencyMs.p99);
    assert.ok(result.latencyMs.p99 <= result.latencyMs.max);
    assert.equal(progress.at(-1), 60, "the last progress report is the end");
  } finally {
    await t.close();
  }
});

Deno.test("runLoad() counts error replies by type and retries", async () => {
  const t = await setup(5);
  try {
    const result = await runLoad(t.client, {
      tasks: 10,
      concurrency: 10,
      targets: ["echo"],
      payload: { fail: true },
      timeoutMs: 5000,
    });
    assert.equal(result.succeeded, 0);
    assert.deepEqual(result.errors, { NonRetryableError: 10 });
    assert.equal(result.retries, 0);
  } finally {
    await t.close();
  }
});

Deno.test("runLoad() counts the retries behind successful replies", async () => {
  const t = await setup(5);
  try {
    const result = await runLoad(t.client, {
      tasks: 3,
      concurrency: 3,
      targets: ["echo"],
      payload: { flaky: true },
      timeoutMs: 10_000,
    });
    assert.equal(result.succeeded, 3);
    assert.equal(result.retries, 3);
  } finally {
    await t.close();
  }
});

Deno.test("runLoad() with a rate starts tasks on schedule rather than all at once", async () => {
  const t = await setup(10);
  try {
    const started = performance.now();
    const result = await runLoad(t.client, {
      tasks: 10,
      concurrency: 1,
      rate: 200,
      targets: ["echo"],
      payload: {},
      timeoutMs: 5000,
    });
    const elapsed = performance.now() - started;
    assert.equal(result.succeeded, 10);
    // Ten tasks at 200 per second: the last starts 45 ms after the first.
    assert.ok(elapsed >= 40, `took ${elapsed} ms`);
  } finally {
    await t.close();
  }
});
