import assert from "node:assert/strict";
import { CONTROL_EXCHANGE, encodeWorkerInfo } from "../core/contract/mod.ts";
import { defineFunction } from "../runtime/define_function.ts";
import { MemoryBroker } from "../core/broker/memory_broker.ts";
import { type RunningWorker, startWorker } from "../runtime/worker/consumer.ts";
import { inProcessRunner } from "../runtime/handler_runner.ts";
import { pingWorkers } from "./ping_workers.ts";
import { RpcClient } from "./rpc_client.ts";

const one = defineFunction({ name: "one", queue: "queue_one", handler: () => 1 });
const two = defineFunction({ name: "two", queue: "queue_two", handler: () => 2 });

async function setup() {
  const hub = new MemoryBroker();
  const workers: RunningWorker[] = [
    await startWorker(inProcessRunner(one), hub.connect(), { workerId: "one@b" }),
    await startWorker(inProcessRunner(one), hub.connect(), { workerId: "one@a" }),
    await startWorker(inProcessRunner(two), hub.connect(), { workerId: "two@a" }),
  ];
  const client = await RpcClient.open(hub.connect());
  return {
    hub,
    client,
    async close() {
      client.close();
      for (const worker of workers) await worker.stop(0);
      await hub.shutdown();
    },
  };
}

Deno.test("pingWorkers() lists every live worker, sorted by queue and id", async () => {
  const t = await setup();
  try {
    const { workers, unexpected } = await pingWorkers(t.client, { timeoutMs: 200 });
    assert.equal(unexpected, 0, "guest workers answer a guest client");
    assert.deepEqual(workers.map((w) => `${w.queue} ${w.worker} ${w.function}`), [
      "queue_one one@a one",
      "queue_one one@b one",
      "queue_two two@a two",
    ]);
  } finally {
    await t.close();
  }
});

Deno.test("pingWorkers() ends as soon as the expected workers answered", async () => {
  const t = await setup();
  try {
    const started = performance.now();
    const { workers } = await pingWorkers(t.client, {
      timeoutMs: 20_000,
      expected: new Map([["queue_one", 2], ["queue_two", 1]]),
    });
    assert.equal(workers.length, 3);
    // A quarter of the timeout: far more than any machine needs, far less than waiting.
    assert.ok(performance.now() - started < 5000, "did not wait for the timeout");
  } finally {
    await t.close();
  }
});

Deno.test("pingWorkers() drops invalid and duplicate answers, and ignores other ids", async () => {
  const hub = new MemoryBroker();
  const fake = hub.connect();
  await fake.declareExchange(CONTROL_EXCHANGE, "fanout");
  await fake.declareQueue("fake.control", { exclusive: true });
  await fake.bindQueue("fake.control", CONTROL_EXCHANGE);
  const info = {
    kind: "pong" as const,
    worker: "fake@1",
    function: "fake",
    queue: "queue_fake",
    started_at: new Date().toISOString(),
    uptime_ms: 5,
    concurrency: 1,
    tasks_done: 0,
    succeeded: 0,
    failed: 0,
    rejected: 0,
    retried: 0,
    in_flight: 0,
  };
  await fake.consume("fake.control", async (delivery) => {
    const { replyTo, correlationId } = delivery.properties;
    await fake.publish(replyTo!, encodeWorkerInfo(info, correlationId));
    await fake.publish(replyTo!, encodeWorkerInfo(info, correlationId));
    await fake.publish(replyTo!, encodeWorkerInfo({ ...info, worker: "late" }, "other-id"));
    await fake.publish(replyTo!, {
      body: new TextEncoder().encode('{"kind":"pong"}'),
      properties: { correlationId },
    });
    fake.ack(delivery);
  }, { prefetch: 1 });
  const client = await RpcClient.open(hub.connect());
  try {
    const { workers } = await pingWorkers(client, { timeoutMs: 100 });
    assert.deepEqual(workers, [info]);
  } finally {
    client.close();
    await hub.shutdown();
  }
});

Deno.test("pingWorkers() finds none, at once, when no worker ever declared the exchange", async () => {
  const hub = new MemoryBroker();
  const client = await RpcClient.open(hub.connect());
  try {
    const started = performance.now();
    assert.deepEqual(await pingWorkers(client, { timeoutMs: 20_000 }), {
      workers: [],
      unexpected: 0,
    });
    assert.ok(performance.now() - started < 5000, "did not wait for the timeout");
  } finally {
    client.close();
    await hub.shutdown();
  }
});

Deno.test("pingWorkers() lists a pong only from the user of the function it names, and counts forgeries", async () => {
  const hub = new MemoryBroker();
  const pong = (worker: string, fn: string) => ({
    kind: "pong" as const,
    worker,
    function: fn,
    queue: `queue_${fn}`,
    started_at: new Date().toISOString(),
    uptime_ms: 5,
    concurrency: 1,
    tasks_done: 0,
    succeeded: 0,
    failed: 0,
    rejected: 0,
    retried: 0,
    in_flight: 0,
  });
  // Each answers every ping as `user`, claiming to be a worker of `fn`.
  const answerAs = async (user: string, worker: string, fn: string) => {
    const connection = hub.connect(user);
    await connection.declareExchange(CONTROL_EXCHANGE, "fanout");
    await connection.declareQueue(`${worker}.control`, { exclusive: true });
    await connection.bindQueue(`${worker}.control`, CONTROL_EXCHANGE);
    await connection.consume(`${worker}.control`, async (delivery) => {
      const { replyTo, correlationId } = delivery.properties;
      await connection.publish(replyTo!, encodeWorkerInfo(pong(worker, fn), correlationId));
      connection.ack(delivery);
    }, { prefetch: 1 });
  };
  await answerAs("task_a", "real_a", "task_a");
  await answerAs("task_b", "forged_a", "task_a");
  await answerAs("intruder", "forged_b", "task_b");
  await answerAs("workers_c", "real_c", "task_c");
  const client = await RpcClient.open(hub.connect("dispatcher"));
  try {
    const { workers, unexpected } = await pingWorkers(client, {
      timeoutMs: 200,
      userOf: (fn) => fn === "task_c" ? "workers_c" : fn,
    });
    assert.deepEqual(workers.map((w) => w.worker), ["real_a", "real_c"]);
    assert.equal(unexpected, 2);
  } finally {
    client.close();
    await hub.shutdown();
  }
});
