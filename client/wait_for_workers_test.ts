import assert from "node:assert/strict";
import { MemoryBroker } from "../core/broker/memory_broker.ts";
import { waitForWorkers, WorkersMissingError } from "./wait_for_workers.ts";

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
