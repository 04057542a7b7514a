import assert from "node:assert/strict";
import { BrokerUnavailableError, type Delivery } from "../functions/_runtime/broker/broker.ts";
import {
  encodeProgress,
  encodeReply,
  type Message,
  parseRequest,
  type TaskProgress,
  type TaskReply,
} from "../functions/_runtime/contract/mod.ts";
import { MemoryBroker } from "../functions/_runtime/broker/memory_broker.ts";
import { RpcClient } from "./rpc_client.ts";

const QUEUE = "queue_rpc";

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

/** A broker with a hand-driven "worker": the test decides when and how to reply. */
async function setup() {
  const hub = new MemoryBroker();
  const server = hub.connect();
  await server.declareQueue(QUEUE);
  const inbox: Delivery[] = [];
  await server.consume(QUEUE, (delivery) => inbox.push(delivery), { prefetch: 100 });
  const clientBroker = hub.connect();
  const client = await RpcClient.open(clientBroker);
  const answer = async (delivery: Delivery, result: unknown) => {
    await server.publish(
      delivery.properties.replyTo!,
      encodeReply(replyFor(delivery, result), delivery.properties.correlationId),
    );
    server.ack(delivery);
  };
  return { hub, server, inbox, client, clientBroker, answer };
}

async function until(check: () => boolean, what: string) {
  const deadline = Date.now() + 2000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

Deno.test("RpcClient.call() sends a contract request and resolves with its reply", async () => {
  const t = await setup();
  try {
    const call = t.client.call(QUEUE, "task_x", { n: 1 }, { timeoutMs: 2000, taskId: "id-1" });
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

Deno.test("RpcClient.call() matches replies by correlation id whatever their order", async () => {
  const t = await setup();
  try {
    const calls = [0, 1, 2, 3, 4].map((i) =>
      t.client.call(QUEUE, "task_x", { i }, { timeoutMs: 2000, taskId: `id-${i}` })
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

Deno.test("RpcClient.call() times out with no reply and then ignores the late one", async () => {
  const t = await setup();
  try {
    const started = performance.now();
    const outcome = await t.client.call(QUEUE, "task_x", {}, { timeoutMs: 50, taskId: "late" });
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

Deno.test("RpcClient ignores a duplicate reply and keeps the first", async () => {
  const t = await setup();
  try {
    const call = t.client.call(QUEUE, "task_x", {}, { timeoutMs: 2000, taskId: "dup" });
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

Deno.test("RpcClient ignores a reply that breaks the contract and keeps waiting", async () => {
  const t = await setup();
  try {
    const call = t.client.call(QUEUE, "task_x", {}, { timeoutMs: 2000, taskId: "bad" });
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

Deno.test("RpcClient passes progress events to onProgress without ending the call", async () => {
  const t = await setup();
  try {
    const seen: TaskProgress[] = [];
    const call = t.client.call(QUEUE, "task_x", {}, {
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

Deno.test("RpcClient rejects pending calls when the broker goes away", async () => {
  const t = await setup();
  try {
    const call = t.client.call(QUEUE, "task_x", {}, { timeoutMs: 60_000 });
    await until(() => t.inbox.length === 1, "request");
    t.hub.disconnectAll("broker crashed");
    await assert.rejects(
      call,
      (error: Error) =>
        error instanceof BrokerUnavailableError && /broker crashed/.test(error.message),
    );
    await assert.rejects(
      t.client.call(QUEUE, "task_x", {}, { timeoutMs: 10 }),
      BrokerUnavailableError,
    );
  } finally {
    await t.hub.shutdown();
  }
});

Deno.test("RpcClient counts an answer that beats the confirm as sent, and reports sent once", async () => {
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
  const client = await RpcClient.open(slow);
  const events: string[] = [];
  try {
    const call = client.call(QUEUE, "task_x", {}, {
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
