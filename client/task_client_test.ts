import assert from "node:assert/strict";
import {
  type ConnectionEvent,
  type Delivery,
  MemoryBroker,
  ReconnectingBroker,
} from "../core/broker/mod.ts";
import { defineFunction, NonRetryableError } from "../runtime/define_function.ts";
import { inProcessRunner } from "../runtime/handler_runner.ts";
import { type RunningWorker, startWorker } from "../runtime/worker/consumer.ts";
import {
  encodeReply,
  EVENTS_EXCHANGE,
  parseTaskEvent,
  type TaskEvent,
  type TaskProgress,
  type TaskReply,
} from "../core/contract/mod.ts";
import { waitFor } from "../tests/_helpers.ts";
import { TaskFailedError, TaskTimeoutError } from "./errors.ts";
import { fanOut, type ReplyMode, TaskClient } from "./task_client.ts";

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

Deno.test("fanOut() starts one slice now and the rest on later turns, all before any ends, in order", async () => {
  let started = 0;
  const allStarted = Promise.withResolvers<void>();
  const release = Promise.withResolvers<void>();
  const results = fanOut(Array.from({ length: 10 }, (_, i) => i), async (i) => {
    if (++started === 10) allStarted.resolve();
    await release.promise;
    return i * 2;
  }, 4);
  assert.equal(started, 4, "the first slice starts at once, the rest wait for a turn");
  await allStarted.promise;
  release.resolve();
  assert.deepEqual(await results, [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]);
});

Deno.test("fanOut() rejects with a call's failure, even one that fails before the last slice starts", async () => {
  await assert.rejects(
    fanOut(
      [1, 2, 3, 4, 5],
      (i) => i === 1 ? Promise.reject(new Error("first")) : Promise.resolve(i),
      2,
    ),
    /first/,
  );
});

const FAST = { baseDelayMs: 5, factor: 1, maxDelayMs: 5, jitter: 0 };

/** A connection of `dispatcher` that connects again after each loss, telling `events`. */
function reconnecting(hub: MemoryBroker, events: ConnectionEvent[] = []) {
  return new ReconnectingBroker(hub.connect("dispatcher"), {
    connect: () => Promise.resolve(hub.connect("dispatcher")),
    onEvent: (event) => events.push(event),
    policy: FAST,
    giveUpMs: 2000,
    settleMs: 20,
  });
}

function replyTo(delivery: Delivery): TaskReply {
  const now = new Date().toISOString();
  return {
    task_id: delivery.properties.correlationId ?? null,
    task: "task_x",
    status: "success",
    result: "done",
    error: null,
    worker: "w",
    queue: "queue_x",
    attempts: 1,
    started_at: now,
    finished_at: now,
    duration_ms: 1,
  };
}

/**
 * A call in flight when the caller's connection is lost, answered while the
 * caller is away: only a reply queue of its own keeps that answer.
 */
async function callAcrossLoss(replies: ReplyMode) {
  const hub = new MemoryBroker();
  const worker = hub.connect("task_x");
  await worker.declareQueue("queue_x");
  const requests: Delivery[] = [];
  await worker.consume("queue_x", (delivery) => requests.push(delivery), { prefetch: 10 });
  const broker = reconnecting(hub);
  const client = await TaskClient.open(broker, {
    functions: new Map([["task_x", { queue: "queue_x", user: "task_x" }]]),
    replies,
  });
  try {
    const call = client.request("task_x", {}, { timeoutMs: 400 });
    await waitFor(() => requests.length === 1, "the request", 2000, 1);
    const request = requests[0];
    worker.ack(request);
    hub.disconnectAll();
    // The worker's node is alive: it answers at once, while the caller is away.
    const answering = hub.connect("task_x");
    await answering.publish(
      request.properties.replyTo!,
      encodeReply(replyTo(request), request.properties.correlationId),
    ).catch(() => {});
    return { outcome: await call, client };
  } finally {
    await client.close();
    await broker.close();
    await hub.shutdown();
  }
}

Deno.test("TaskClient with a reply queue gets the reply sent while it reconnected", async () => {
  const { outcome, client } = await callAcrossLoss("queue");
  assert.equal(outcome.kind, "reply");
  assert.match(client.replyTo, /^replies\.[0-9a-f]{32}$/);
});

Deno.test("TaskClient with Direct Reply-to loses the reply sent while it reconnected", async () => {
  const { outcome } = await callAcrossLoss("direct");
  assert.equal(outcome.kind, "timeout", "the reply went to the lost connection");
});

Deno.test("TaskClient.close() deletes its reply queue", async () => {
  const hub = new MemoryBroker();
  const broker = hub.connect("dispatcher");
  const client = await TaskClient.open(broker, { functions: new Map(), replies: "queue" });
  assert.notEqual(await broker.inspectQueue(client.replyTo), null);
  await client.close();
  assert.equal(await broker.inspectQueue(client.replyTo), null);
  await hub.shutdown();
});

Deno.test("TaskClient.close() with a reply queue leaves a connection lost meanwhile free to reconnect", async () => {
  // The cluster's failure: the caller's node dies as it closes. The next
  // connection must not try to consume the reply queue the client deleted.
  const hub = new MemoryBroker();
  const events: ConnectionEvent[] = [];
  const broker = reconnecting(hub, events);
  const client = await TaskClient.open(broker, { functions: new Map(), replies: "queue" });
  try {
    await client.close();
    hub.disconnectAll();
    await waitFor(
      () => events.some((event) => event.kind !== "lost"),
      "the reconnection's first news",
      2000,
      1,
    );
    assert.deepEqual(
      events.map((event) => event.kind === "retrying" ? event.error.message : event.kind),
      ["lost", "reconnected"],
    );
  } finally {
    await broker.close();
    await hub.shutdown();
  }
});
