import assert from "node:assert/strict";
import { MemoryBroker } from "../core/broker/memory_broker.ts";
import { defineFunction, NonRetryableError } from "../runtime/define_function.ts";
import { inProcessRunner } from "../runtime/handler_runner.ts";
import { type RunningWorker, startWorker } from "../runtime/worker/consumer.ts";
import {
  EVENTS_EXCHANGE,
  parseTaskEvent,
  type TaskEvent,
  type TaskProgress,
} from "../core/contract/mod.ts";
import { waitFor } from "../tests/_helpers.ts";
import { TaskFailedError, TaskTimeoutError } from "./errors.ts";
import { TaskClient } from "./task_client.ts";

const add = defineFunction({
  name: "add",
  queue: "queue_add",
  retry: { maxRetries: 1, baseDelayMs: 1 },
  async handler(payload, context) {
    if (payload.fail === "always") throw new NonRetryableError("cannot add that");
    if (payload.fail === "once" && context.attempt === 1) throw new Error("flaky");
    if (payload.sleep_ms) await new Promise((resolve) => setTimeout(resolve, 200));
    return (payload.a as number) + (payload.b as number);
  },
});

/** A worker of `add` running as the broker user `add`, and a client as `dispatcher`. */
async function setup() {
  const hub = new MemoryBroker();
  const workers: RunningWorker[] = [
    await startWorker(inProcessRunner(add), hub.connect("add"), {
      workerId: "add@1",
      concurrency: 4,
    }),
  ];
  const client = await TaskClient.open(hub.connect("dispatcher"), {
    functions: new Map([["add", { queue: "queue_add", user: "add" }]]),
    label: "memory",
  });
  return {
    hub,
    client,
    async close() {
      await client.close();
      for (const worker of workers) await worker.stop(0);
      await hub.shutdown();
    },
  };
}

Deno.test("TaskClient.call() resolves with the function's result", async () => {
  const t = await setup();
  try {
    const sum = await t.client.call<number>("add", { a: 2, b: 3 });
    assert.equal(sum, 5);
    assert.equal(t.client.broker, "memory");
    assert.equal(t.client.user, "dispatcher");
  } finally {
    await t.close();
  }
});

Deno.test("TaskClient.call() rejects with a TaskFailedError carrying the reply's error", async () => {
  const t = await setup();
  try {
    const error = await t.client.call("add", { fail: "always" }, { taskId: "t-1" }).catch((e) => e);
    assert.ok(error instanceof TaskFailedError);
    assert.equal(error.function, "add");
    assert.equal(error.taskId, "t-1");
    assert.equal(error.errorType, "NonRetryableError");
    assert.equal(error.errorMessage, "cannot add that");
    assert.equal(error.attempts, 1);
    assert.equal(error.worker, "add@1");
    assert.match(error.message, /^Task t-1 of add failed after 1 attempt: NonRetryableError: /);
  } finally {
    await t.close();
  }
});

Deno.test("TaskClient.call() rejects with a TaskTimeoutError that says how far it got", async () => {
  const t = await setup();
  try {
    const seen: TaskProgress[] = [];
    const error = await t.client.call("add", { a: 1, b: 1, sleep_ms: 200 }, {
      timeoutMs: 50,
      onProgress: (progress) => seen.push(progress),
    }).catch((e) => e);
    assert.ok(error instanceof TaskTimeoutError, String(error));
    assert.equal(error.timeoutMs, 50);
    assert.equal(error.lastProgress?.event, "started");
    assert.match(error.message, /got no reply within 50 ms; last seen on add@1, attempt 1/);
  } finally {
    await t.close();
  }
});

Deno.test("TaskClient.callAll() settles every call in order, with progress per call", async () => {
  const t = await setup();
  try {
    const events: string[] = [];
    const results = await t.client.callAll<number>([
      { function: "add", payload: { a: 1, b: 2 } },
      { function: "add", payload: { fail: "always" } },
      {
        function: "add",
        payload: { a: 5, b: 5, fail: "once" },
        onProgress: (p) => events.push(`${p.event} ${p.attempt}`),
      },
    ]);
    assert.deepEqual(results.map((r) => r.status), ["fulfilled", "rejected", "fulfilled"]);
    assert.equal(results[0].status === "fulfilled" && results[0].value, 3);
    assert.ok(results[1].status === "rejected" && results[1].reason instanceof TaskFailedError);
    assert.equal(results[2].status === "fulfilled" && results[2].value, 10);
    assert.deepEqual(events, ["started 1", "retry 1", "started 2"]);
  } finally {
    await t.close();
  }
});

Deno.test("TaskClient names the fix for a function it does not know", async () => {
  const t = await setup();
  try {
    assert.throws(
      () => t.client.route("mul"),
      new TypeError(
        "Cannot call 'mul' as no queue is known for it: use one of add, or add it to functions/registry.yaml or the 'functions' option",
      ),
    );
    await assert.rejects(t.client.call("mul"), TypeError);
  } finally {
    await t.close();
  }
});

Deno.test("TaskClient.ping() lists only workers that answer as their function's user", async () => {
  const t = await setup();
  try {
    const { workers, unexpected } = await t.client.ping({ timeoutMs: 100 });
    assert.deepEqual(workers.map((w) => w.worker), ["add@1"]);
    assert.equal(unexpected, 0);
  } finally {
    await t.close();
  }
});

Deno.test("TaskClient.close() rejects pending calls and runs onClose once", async () => {
  const hub = new MemoryBroker();
  let closed = 0;
  const client = await TaskClient.open(hub.connect(), {
    functions: new Map([["add", { queue: "queue_add", user: "add" }]]),
    onClose: () => {
      closed++;
      return Promise.resolve();
    },
  });
  try {
    await hub.connect().declareQueue("queue_add");
    const pending = client.call("add", {}, { timeoutMs: 60_000 });
    await Promise.all([client.close(), client.close()]);
    await assert.rejects(pending, /client was closed/);
    assert.equal(closed, 1);
  } finally {
    await hub.shutdown();
  }
});

Deno.test("TaskClient with events on publishes task-sent before the worker's own events", async () => {
  const hub = new MemoryBroker();
  const watcher = hub.connect("dashboard");
  await watcher.declareExchange(EVENTS_EXCHANGE, "fanout");
  await watcher.declareQueue("events_seen", { durable: false, exclusive: true });
  await watcher.bindQueue("events_seen", EVENTS_EXCHANGE);
  const seen: TaskEvent[] = [];
  await watcher.consume("events_seen", (delivery) => {
    watcher.ack(delivery);
    const event = parseTaskEvent(delivery.body);
    if (event.ok) seen.push(event.value);
  }, { prefetch: 10 });
  const worker = await startWorker(inProcessRunner(add), hub.connect("add"), {
    workerId: "add@1",
    events: true,
  });
  const client = await TaskClient.open(hub.connect("dispatcher"), {
    functions: new Map([["add", { queue: "queue_add", user: "add" }]]),
    events: true,
    caller: "dispatcher@test",
  });
  try {
    assert.equal(await client.call<number>("add", { a: 1, b: 1 }, { taskId: "t1" }), 2);
    await waitFor(() => seen.length === 3, "three events", 2000, 1);
    assert.deepEqual(seen.map((e) => [e.kind, e.task_id, e.worker]), [
      ["task-sent", "t1", "dispatcher@test"],
      ["task-started", "t1", "add@1"],
      ["task-succeeded", "t1", "add@1"],
    ]);
    assert.equal(seen[0].function, "add");
    assert.equal(seen[0].queue, "queue_add");
  } finally {
    await client.close();
    await worker.stop(0);
    await hub.shutdown();
  }
});
