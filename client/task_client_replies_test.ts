import assert from "node:assert/strict";
import {
  type Broker,
  BrokerUnavailableError,
  type Delivery,
  MemoryBroker,
} from "../core/broker/mod.ts";
import {
  encodeProgress,
  encodeReply,
  EVENTS_EXCHANGE,
  type Message,
  parseRequest,
  parseTaskEvent,
  type TaskEvent,
  type TaskProgress,
  type TaskReply,
} from "../core/contract/mod.ts";
import { waitFor } from "../tests/_helpers.ts";
import type { FunctionRoute } from "../core/registry.ts";
import { TaskClient, type TaskClientOptions } from "./task_client.ts";

// A client's view of replies, with a hand-driven worker: matching by
// correlation id, deadlines, progress, whom it believes, what it ignores.

const QUEUE = "queue_rpc";

/** `task_x` served on QUEUE by the broker user `user` (default: its name). */
function routes(user = "task_x"): Map<string, FunctionRoute> {
  return new Map([["task_x", { queue: QUEUE, user }]]);
}

function open(broker: Broker, options: Partial<TaskClientOptions> = {}): Promise<TaskClient> {
  return TaskClient.open(broker, { functions: routes(), ...options });
}

function replyFor(delivery: Delivery, result: unknown): TaskReply {
  const now = new Date().toISOString();
  return {
    task_id: delivery.properties.correlationId ?? null,
    task: "task_x",
    status: "success",
    result,
    error: null,
    worker: "fake",
    queue: QUEUE,
    attempts: 1,
    started_at: now,
    finished_at: now,
    duration_ms: 1,
  };
}

/**
 * A broker with a hand-driven "worker": the test decides when and how to
 * reply. Every party is `guest` unless `users` says otherwise.
 */
async function setup(
  users: { client?: string; server?: string } = {},
  options: Partial<TaskClientOptions> = {},
) {
  const hub = new MemoryBroker();
  const server = hub.connect(users.server);
  await server.declareQueue(QUEUE);
  const inbox: Delivery[] = [];
  await server.consume(QUEUE, (delivery) => inbox.push(delivery), { prefetch: 100 });
  const clientBroker = hub.connect(users.client);
  const client = await open(clientBroker, options);
  const answer = async (delivery: Delivery, result: unknown) => {
    await server.publish(
      delivery.properties.replyTo!,
      encodeReply(replyFor(delivery, result), delivery.properties.correlationId),
    );
    server.ack(delivery);
  };
  return { hub, server, inbox, client, clientBroker, answer };
}

const until = (check: () => boolean, what: string) => waitFor(check, what, 2000, 1);

Deno.test("TaskClient.request() sends a contract request and resolves with its reply", async () => {
  const t = await setup();
  try {
    const call = t.client.request("task_x", { n: 1 }, { timeoutMs: 2000, taskId: "id-1" });
    await until(() => t.inbox.length === 1, "request");
    const [request] = t.inbox;
    assert.equal(request.properties.correlationId, "id-1");
    assert.equal(request.properties.messageId, "id-1");
    assert.equal(request.properties.persistent, true);
    const parsed = parseRequest(request, { task: "task_x" });
    assert.ok(parsed.ok);
    assert.deepEqual(parsed.value.payload, { n: 1 });
    await t.answer(request, "done");
    const outcome = await call;
    assert.equal(outcome.kind, "reply");
    assert.equal(outcome.kind === "reply" && outcome.reply.result, "done");
    assert.ok(outcome.endedAt >= outcome.sentAt);
  } finally {
    t.client.close();
    await t.hub.shutdown();
  }
});

Deno.test("TaskClient.request() matches replies by correlation id whatever their order", async () => {
  const t = await setup();
  try {
    const calls = [0, 1, 2, 3, 4].map((i) =>
      t.client.request("task_x", { i }, { timeoutMs: 2000, taskId: `id-${i}` })
    );
    await until(() => t.inbox.length === 5, "requests");
    for (const delivery of [...t.inbox].reverse()) {
      await t.answer(delivery, `for ${delivery.properties.correlationId}`);
    }
    const outcomes = await Promise.all(calls);
    outcomes.forEach((outcome, i) => {
      assert.equal(outcome.kind, "reply");
      assert.equal(outcome.kind === "reply" && outcome.reply.result, `for id-${i}`);
    });
  } finally {
    t.client.close();
    await t.hub.shutdown();
  }
});

Deno.test("TaskClient.request() times out with no reply and then ignores the late one", async () => {
  const t = await setup();
  try {
    const started = performance.now();
    const outcome = await t.client.request("task_x", {}, { timeoutMs: 50, taskId: "late" });
    assert.equal(outcome.kind, "timeout");
    assert.ok(performance.now() - started >= 49);
    assert.equal(t.client.pending, 0);
    await t.answer(t.inbox[0], "too late");
    await until(() => t.client.ignored.unknown === 1, "late reply counted");
  } finally {
    t.client.close();
    await t.hub.shutdown();
  }
});

Deno.test("TaskClient ignores a duplicate reply and keeps the first", async () => {
  const t = await setup();
  try {
    const call = t.client.request("task_x", {}, { timeoutMs: 2000, taskId: "dup" });
    await until(() => t.inbox.length === 1, "request");
    await t.answer(t.inbox[0], "first");
    await t.answer(t.inbox[0], "second");
    const outcome = await call;
    assert.equal(outcome.kind === "reply" && outcome.reply.result, "first");
    await until(() => t.client.ignored.unknown === 1, "duplicate counted");
  } finally {
    t.client.close();
    await t.hub.shutdown();
  }
});

Deno.test("TaskClient ignores a reply that breaks the contract and keeps waiting", async () => {
  const t = await setup();
  try {
    const call = t.client.request("task_x", {}, { timeoutMs: 2000, taskId: "bad" });
    await until(() => t.inbox.length === 1, "request");
    const [request] = t.inbox;
    await t.server.publish(request.properties.replyTo!, {
      body: new TextEncoder().encode('{"status":"maybe"}'),
      properties: { correlationId: "bad" },
    });
    await until(() => t.client.ignored.invalid === 1, "invalid reply counted");
    assert.equal(t.client.pending, 1);
    await t.answer(request, "valid");
    const outcome = await call;
    assert.equal(outcome.kind === "reply" && outcome.reply.result, "valid");
  } finally {
    t.client.close();
    await t.hub.shutdown();
  }
});

Deno.test("TaskClient passes progress events to onProgress without ending the call", async () => {
  const t = await setup();
  try {
    const seen: TaskProgress[] = [];
    const call = t.client.request("task_x", {}, {
      timeoutMs: 2000,
      taskId: "p",
      onProgress: (progress) => seen.push(progress),
    });
    await until(() => t.inbox.length === 1, "request");
    const [request] = t.inbox;
    const parsed = parseRequest(request, { task: "task_x" });
    assert.ok(parsed.ok && parsed.value.progress, "asking for progress sets the flag");
    await t.server.publish(
      request.properties.replyTo!,
      encodeProgress({
        task_id: "p",
        task: "task_x",
        event: "started",
        worker: "fake",
        queue: QUEUE,
        attempt: 1,
        at: new Date().toISOString(),
      }, "p"),
    );
    await until(() => seen.length === 1, "progress");
    assert.equal(t.client.pending, 1);
    await t.answer(request, "ok");
    assert.equal((await call).kind, "reply");
  } finally {
    t.client.close();
    await t.hub.shutdown();
  }
});

Deno.test("TaskClient rejects pending calls when the broker goes away", async () => {
  const t = await setup();
  try {
    const call = t.client.request("task_x", {}, { timeoutMs: 60_000 });
    await until(() => t.inbox.length === 1, "request");
    t.hub.disconnectAll("broker crashed");
    await assert.rejects(
      call,
      (error: Error) =>
        error instanceof BrokerUnavailableError && /broker crashed/.test(error.message),
    );
    await assert.rejects(
      t.client.request("task_x", {}, { timeoutMs: 10 }),
      BrokerUnavailableError,
    );
  } finally {
    await t.hub.shutdown();
  }
});

Deno.test("TaskClient counts an answer that beats the confirm as sent, and reports sent once", async () => {
  const hub = new MemoryBroker();
  const server = hub.connect();
  await server.declareQueue(QUEUE);
  const inner = hub.connect();
  let confirm!: () => void;
  const confirmed = new Promise<void>((resolve) => confirm = resolve);
  // The request reaches the queue at once, but its confirm comes late.
  const slow = Object.assign(Object.create(inner), {
    openReplyQueue: inner.openReplyQueue.bind(inner),
    async publish(queue: string, message: Message) {
      await inner.publish(queue, message);
      await confirmed;
    },
  });
  await server.consume(QUEUE, async (delivery) => {
    const replyTo = delivery.properties.replyTo!;
    const progress = encodeProgress({
      task_id: "early",
      task: "task_x",
      event: "started",
      worker: "fake",
      queue: QUEUE,
      attempt: 1,
      at: new Date().toISOString(),
    }, "early");
    await server.publish(replyTo, progress);
    await server.publish(replyTo, encodeReply(replyFor(delivery, "ok"), "early"));
    server.ack(delivery);
  }, { prefetch: 1 });
  const client = await open(slow);
  const events: string[] = [];
  try {
    const call = client.request("task_x", {}, {
      timeoutMs: 2000,
      taskId: "early",
      onSent: () => events.push("sent"),
      onProgress: () => events.push("started"),
    }).then((outcome) => events.push(`done:${outcome.kind}`));
    // The answers prove the broker had the request: nothing waits for the
    // confirm, and the order is still sent, started, done.
    await call;
    assert.deepEqual(events, ["sent", "started", "done:reply"]);
    confirm();
    await new Promise((resolve) => setTimeout(resolve, 10));
    assert.deepEqual(events, ["sent", "started", "done:reply"], "sent is reported once");
  } finally {
    client.close();
    await hub.shutdown();
  }
});

Deno.test("TaskClient.request() sends the call's deadline with the request, as body and expiration", async () => {
  const t = await setup();
  try {
    const before = Date.now();
    const call = t.client.request("task_x", {}, { timeoutMs: 1500, taskId: "d" });
    await until(() => t.inbox.length === 1, "request");
    const [request] = t.inbox;
    const parsed = parseRequest(request, { task: "task_x" });
    assert.ok(parsed.ok);
    const deadline = parsed.value.deadline!;
    assert.ok(deadline >= before + 1500 && deadline <= Date.now() + 1500, `deadline ${deadline}`);
    const expiration = Number(request.properties.expiration);
    assert.ok(expiration > 0 && expiration <= 1500, `expiration ${expiration}`);
    await t.answer(request, "ok");
    assert.equal((await call).kind, "reply");
  } finally {
    t.client.close();
    await t.hub.shutdown();
  }
});

Deno.test("TaskClient ignores a reply forged by another broker user and takes the workers' own", async () => {
  const t = await setup({ client: "dispatcher", server: "task_x" });
  const forger = t.hub.connect("task_b");
  try {
    const progress: TaskProgress[] = [];
    const call = t.client.request("task_x", {}, {
      timeoutMs: 2000,
      taskId: "f",
      onProgress: (event) => progress.push(event),
    });
    await until(() => t.inbox.length === 1, "request");
    const [request] = t.inbox;
    const replyTo = request.properties.replyTo!;
    await forger.publish(replyTo, encodeReply(replyFor(request, "forged"), "f"));
    await forger.publish(
      replyTo,
      encodeProgress({
        task_id: "f",
        task: "task_x",
        event: "started",
        worker: "forged",
        queue: QUEUE,
        attempt: 1,
        at: new Date().toISOString(),
      }, "f"),
    );
    await until(() => t.client.ignored.unexpectedSender === 2, "forged answers counted");
    assert.equal(t.client.pending, 1, "the call still waits");
    assert.deepEqual(progress, []);
    await t.answer(request, "real");
    const outcome = await call;
    assert.equal(outcome.kind === "reply" && outcome.reply.result, "real");
  } finally {
    t.client.close();
    await t.hub.shutdown();
  }
});

Deno.test("TaskClient takes replies from the user its route names, or its own", async () => {
  const t = await setup({ client: "dispatcher", server: "workers_of_x" }, {
    functions: routes("workers_of_x"),
  });
  const self = t.hub.connect("dispatcher");
  try {
    const named = t.client.request("task_x", {}, { timeoutMs: 2000, taskId: "n" });
    const own = t.client.request("task_x", {}, { timeoutMs: 2000, taskId: "o" });
    await until(() => t.inbox.length === 2, "requests");
    await t.answer(t.inbox[0], "from the named user");
    await self.publish(
      t.inbox[1].properties.replyTo!,
      encodeReply(replyFor(t.inbox[1], "from my own user"), "o"),
    );
    assert.equal((await named).kind, "reply");
    assert.equal((await own).kind, "reply");
    assert.equal(t.client.ignored.unexpectedSender, 0);
  } finally {
    t.client.close();
    await t.hub.shutdown();
  }
});

Deno.test("TaskClient onWire sees every reply on the wire, duplicates and strangers included", async () => {
  const wire: string[] = [];
  const t = await setup({}, { onWire: (m) => wire.push(m.properties.correlationId ?? "-") });
  try {
    const call = t.client.request("task_x", {}, { timeoutMs: 2000, taskId: "w" });
    await until(() => t.inbox.length === 1, "request");
    await t.answer(t.inbox[0], "first");
    await t.answer(t.inbox[0], "duplicate");
    await t.server.publish(t.inbox[0].properties.replyTo!, {
      body: new TextEncoder().encode("not json"),
      properties: { correlationId: "stranger" },
    });
    await call;
    await until(() => wire.length === 3, "three messages on the wire");
    assert.deepEqual(wire, ["w", "w", "stranger"]);
    assert.equal(t.client.ignored.unknown, 2, "the duplicate and the stranger were ignored");
  } finally {
    t.client.close();
    await t.hub.shutdown();
  }
});

Deno.test("TaskClient ends a call as a timeout when the worker says its deadline passed", async () => {
  const t = await setup();
  try {
    const call = t.client.request("task_x", {}, { timeoutMs: 5000, taskId: "dl" });
    await until(() => t.inbox.length === 1, "request");
    const [request] = t.inbox;
    await t.server.publish(
      request.properties.replyTo!,
      encodeReply({
        ...replyFor(request, null),
        status: "error",
        error: { type: "DeadlineExceeded", message: "the caller no longer waits for it" },
      }, "dl"),
    );
    const outcome = await call;
    assert.equal(outcome.kind, "timeout");
    assert.equal(t.client.pending, 0);
  } finally {
    t.client.close();
    await t.hub.shutdown();
  }
});

Deno.test("TaskClient.request() with tracing off adds no trace header and gives no trace ids", async () => {
  const t = await setup();
  try {
    let sentWith: unknown;
    const call = t.client.request("task_x", {}, {
      timeoutMs: 2000,
      taskId: "plain",
      onSent: (trace) => sentWith = trace,
    });
    await until(() => t.inbox.length === 1, "request");
    // Not even x-sent-at: a header table costs the caller as much as the rest of the request.
    assert.deepEqual(Object.keys(t.inbox[0].properties.headers ?? {}), []);
    await t.answer(t.inbox[0], "ok");
    const outcome = await call;
    assert.equal(outcome.trace, undefined);
    assert.deepEqual(sentWith, {});
  } finally {
    t.client.close();
    await t.hub.shutdown();
  }
});

Deno.test("TaskClient.request() with events on publishes one task-sent event per request the broker took", async () => {
  const t = await setup({}, { events: true, caller: "caller@test" });
  const watcher = t.hub.connect("dashboard");
  await watcher.declareQueue("events_seen", { durable: false, exclusive: true });
  await watcher.bindQueue("events_seen", EVENTS_EXCHANGE);
  const sent: TaskEvent[] = [];
  await watcher.consume("events_seen", (delivery) => {
    watcher.ack(delivery);
    const event = parseTaskEvent(delivery.body);
    if (event.ok) sent.push(event.value);
  }, { prefetch: 10 });
  try {
    const call = t.client.request("task_x", { a: 1 }, { timeoutMs: 2000, taskId: "ev" });
    await until(() => t.inbox.length === 1, "request");
    await t.answer(t.inbox[0], "ok");
    await call;
    await until(() => sent.length === 1, "the task-sent event");
    const other = t.client.request("task_x", {}, { timeoutMs: 2000, taskId: "ev2" });
    await until(() => t.inbox.length === 2, "the second request");
    await t.answer(t.inbox[1], "ok");
    await other;
    await until(() => sent.length === 2, "the second task-sent event");
    assert.deepEqual(
      sent.map((e) => [e.kind, e.function, e.queue, e.task_id, e.worker]),
      [
        ["task-sent", "task_x", QUEUE, "ev", "caller@test"],
        ["task-sent", "task_x", QUEUE, "ev2", "caller@test"],
      ],
    );
  } finally {
    t.client.close();
    await t.hub.shutdown();
  }
});
