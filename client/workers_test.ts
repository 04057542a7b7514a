import assert from "node:assert/strict";
import { MemoryBroker } from "../core/broker/mod.ts";
import { CONTROL_EXCHANGE, encodeWorkerInfo } from "../core/contract/mod.ts";
import { defineFunction } from "../runtime/define_function.ts";
import { type RunningWorker, startWorker } from "../runtime/worker/consumer.ts";
import { inProcessRunner } from "../runtime/handler_runner.ts";
import { TaskClient } from "./task_client.ts";
import { waitForWorkers, WorkersMissingError } from "./workers.ts";

const one = defineFunction({ name: "one", queue: "queue_one", handler: () => 1 });
const two = defineFunction({ name: "two", queue: "queue_two", handler: () => 2 });

async function setup() {
  const hub = new MemoryBroker();
  const workers: RunningWorker[] = [
    await startWorker(inProcessRunner(one), hub.connect(), { workerId: "one@b" }),
    await startWorker(inProcessRunner(one), hub.connect(), { workerId: "one@a" }),
    await startWorker(inProcessRunner(two), hub.connect(), { workerId: "two@a" }),
  ];
  const client = await TaskClient.open(hub.connect(), { functions: new Map() });
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

Deno.test("TaskClient.ping() lists every live worker, sorted by queue and id", async () => {
  const t = await setup();
  try {
    const { workers, unexpected } = await t.client.ping({ timeoutMs: 200 });
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

Deno.test("TaskClient.ping() ends as soon as the expected workers answered", async () => {
  const t = await setup();
  try {
    const started = performance.now();
    const { workers } = await t.client.ping({
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

Deno.test("TaskClient.ping() drops invalid and duplicate answers, and ignores other ids", async () => {
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
  const client = await TaskClient.open(hub.connect(), { functions: new Map() });
  try {
    const { workers } = await client.ping({ timeoutMs: 100 });
    assert.deepEqual(workers, [info]);
  } finally {
    client.close();
    await hub.shutdown();
  }
});

Deno.test("TaskClient.ping() finds none, at once, when no worker ever declared the exchange", async () => {
  const hub = new MemoryBroker();
  const client = await TaskClient.open(hub.connect(), { functions: new Map() });
  try {
    const started = performance.now();
    assert.deepEqual(await client.ping({ timeoutMs: 20_000 }), {
      workers: [],
      unexpected: 0,
    });
    assert.ok(performance.now() - started < 5000, "did not wait for the timeout");
  } finally {
    client.close();
    await hub.shutdown();
  }
});

Deno.test("TaskClient.ping() lists a pong only from the user of the function it names, and counts forgeries", async () => {
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
  const client = await TaskClient.open(hub.connect("dispatcher"), {
    functions: new Map([
      ["task_a", { queue: "queue_task_a", user: "task_a" }],
      ["task_b", { queue: "queue_task_b", user: "task_b" }],
      ["task_c", { queue: "queue_task_c", user: "workers_c" }],
    ]),
  });
  try {
    const { workers, unexpected } = await client.ping({ timeoutMs: 200 });
    assert.deepEqual(workers.map((w) => w.worker), ["real_a", "real_c"]);
    assert.equal(unexpected, 2);
  } finally {
    client.close();
    await hub.shutdown();
  }
});

Deno.test("TaskClient.ping() asks for answers by Direct Reply-to, with a reply queue of its own too", async () => {
  for (const replies of ["direct", "queue"] as const) {
    const hub = new MemoryBroker();
    const worker = hub.connect("one");
    await worker.declareExchange(CONTROL_EXCHANGE, "fanout");
    await worker.declareQueue("one.control", { exclusive: true });
    await worker.bindQueue("one.control", CONTROL_EXCHANGE);
    const replyTos: string[] = [];
    await worker.consume("one.control", async (delivery) => {
      const { replyTo, correlationId } = delivery.properties;
      replyTos.push(replyTo!);
      await worker.publish(replyTo!, encodeWorkerInfo(pongOf("one@1", "one"), correlationId));
      worker.ack(delivery);
    }, { prefetch: 1 });
    const client = await TaskClient.open(hub.connect("dispatcher"), {
      functions: new Map([["one", { queue: "queue_one", user: "one" }]]),
      replies,
    });
    try {
      const { workers } = await client.ping({ timeoutMs: 200 });
      assert.deepEqual(workers.map((w) => w.worker), ["one@1"], replies);
      assert.match(replyTos[0], /^amq\.rabbitmq\.reply-to/, replies);
      if (replies === "queue") assert.match(client.replyTo, /^replies\.[0-9a-f]{32}$/);
      // A second ping reuses the same Direct Reply-to.
      await client.ping({ timeoutMs: 50 });
      assert.equal(replyTos[1], replyTos[0], replies);
    } finally {
      await client.close();
      await hub.shutdown();
    }
  }
});

function pongOf(worker: string, fn: string) {
  return {
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
  };
}

Deno.test("waitForWorkers() names each missing worker and how to start it", async () => {
  const hub = new MemoryBroker();
  const broker = hub.connect();
  await broker.declareQueue("queue_a");
  await broker.consume("queue_a", () => {}, { prefetch: 1 });
  const waiting: string[][] = [];
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const gaveUp = waitForWorkers(broker, [
      { task: "task_a", queue: "queue_a" },
      { task: "task_b", queue: "queue_b" },
      { task: "task_c", queue: "queue_c", protocol: "celery" },
    ], {
      timeoutMs: 60,
      intervalMs: 10,
      onWaiting: (missing) => waiting.push(missing.map((m) => m.task)),
    }).catch((e) => e);
    // One that ignored its 60 ms would still be checking when this 5 s timer fires.
    const stillWaiting = new Promise((resolve) => {
      timer = setTimeout(() => resolve("still waiting after 5 s"), 5000);
    });
    const error = await Promise.race([gaveUp, stillWaiting]);
    assert.ok(error instanceof WorkersMissingError, String(error));
    assert.deepEqual(error.missing.map((m: { task: string }) => m.task), ["task_b", "task_c"]);
    assert.match(error.message, /task_b: no worker consumes 'queue_b'/);
    assert.match(error.message, /deno task worker task_b/);
    assert.match(
      error.message,
      /task_c: no Celery worker consumes 'queue_c'\. Start one: 'docker compose --profile celery up -d --build'/,
    );
    assert.deepEqual(waiting, [["task_b", "task_c"]], "told once");
  } finally {
    clearTimeout(timer);
    await hub.shutdown();
  }
});

Deno.test("waitForWorkers() resolves once a late worker starts consuming", async () => {
  const hub = new MemoryBroker();
  const broker = hub.connect();
  const late = hub.connect();
  try {
    setTimeout(async () => {
      await late.declareQueue("queue_a");
      await late.consume("queue_a", () => {}, { prefetch: 1 });
    }, 30);
    const consumers = await waitForWorkers(broker, [{ task: "task_a", queue: "queue_a" }], {
      timeoutMs: 2000,
      intervalMs: 10,
    });
    assert.equal(consumers.get("queue_a"), 1);
  } finally {
    await hub.shutdown();
  }
});
