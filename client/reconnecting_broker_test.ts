import assert from "node:assert/strict";
import { type Broker, BrokerUnavailableError, type Delivery } from "../core/broker/broker.ts";
import { MemoryBroker } from "../core/broker/memory_broker.ts";
import { encodeReply, type Message, type TaskReply } from "../core/contract/mod.ts";
import { waitFor } from "../tests/_helpers.ts";
import { type ConnectionEvent, ReconnectingBroker } from "./reconnecting_broker.ts";
import { RpcClient } from "./rpc_client.ts";

const FAST = { baseDelayMs: 5, factor: 1, maxDelayMs: 5, jitter: 0 };
const text = (message: Message) => new TextDecoder().decode(message.body);
const body = (value: string): Message => ({
  body: new TextEncoder().encode(value),
  properties: {},
});

function reconnecting(hub: MemoryBroker, events: ConnectionEvent[] = [], giveUpMs = 2000) {
  return new ReconnectingBroker(hub.connect("dispatcher"), {
    connect: () => Promise.resolve(hub.connect("dispatcher")),
    onEvent: (event) => events.push(event),
    policy: FAST,
    giveUpMs,
    settleMs: 20,
  });
}

Deno.test("ReconnectingBroker connects again after a loss, with its queues and consumers", async () => {
  const hub = new MemoryBroker();
  const events: ConnectionEvent[] = [];
  const broker = reconnecting(hub, events);
  try {
    await broker.declareQueue("q", { durable: true, type: "quorum" });
    const got: string[] = [];
    await broker.consume("q", (delivery) => {
      got.push(text(delivery));
      broker.ack(delivery);
    }, { prefetch: 10 });
    await broker.publish("q", body("before"));
    await waitFor(() => got.length === 1, "the first message", 2000, 1);

    hub.disconnectAll();
    // Sent while no connection is open: it waits for the next one.
    await broker.publish("q", body("after"));
    await waitFor(() => got.length === 2, "the message sent across the loss", 2000, 1);
    assert.deepEqual(got, ["before", "after"]);
    assert.deepEqual(events.map((event) => event.kind), ["lost", "reconnected"]);
    assert.equal((await broker.inspectQueue("q"))?.consumers, 1, "one consumer, resumed");
  } finally {
    await broker.close();
    await hub.shutdown();
  }
});

Deno.test("ReconnectingBroker leaves a delivery of a lost connection to the broker, which delivers it again", async () => {
  const hub = new MemoryBroker();
  const broker = reconnecting(hub);
  try {
    await broker.declareQueue("q");
    const seen: Delivery[] = [];
    await broker.consume("q", (delivery) => seen.push(delivery), { prefetch: 10 });
    await broker.publish("q", body("one"));
    await waitFor(() => seen.length === 1, "a delivery", 2000, 1);
    hub.disconnectAll();
    await waitFor(() => seen.length === 2, "the same message again", 2000, 1);
    broker.ack(seen[0]); // Of the lost connection: nothing happens.
    broker.ack(seen[1]);
    await waitFor(
      async () => (await broker.inspectQueue("q"))?.messages === 0,
      "settled once",
      2000,
      1,
    );
    assert.equal(seen[1].redelivered, true);
  } finally {
    await broker.close();
    await hub.shutdown();
  }
});

Deno.test("ReconnectingBroker gives up when no node answers in time, and says so", async () => {
  const hub = new MemoryBroker();
  const events: ConnectionEvent[] = [];
  let attempts = 0;
  const broker = new ReconnectingBroker(hub.connect(), {
    connect: () => {
      attempts++;
      return Promise.reject(new BrokerUnavailableError("nothing answers", { unreachable: true }));
    },
    onEvent: (event) => events.push(event),
    policy: FAST,
    giveUpMs: 60,
  });
  hub.disconnectAll();
  const error = await broker.closed;
  assert.ok(error instanceof BrokerUnavailableError);
  assert.match(error.message, /Cannot reach the broker again .*nothing answers.*no node answered/);
  assert.ok(attempts >= 2, `tried ${attempts} times`);
  assert.equal(events[0].kind, "lost");
  assert.equal(events.at(-1)?.kind, "gave-up");
  assert.ok(events.some((event) => event.kind === "retrying"));
  await assert.rejects(broker.publish("q", body("x")), BrokerUnavailableError);
  await hub.shutdown();
});

Deno.test("ReconnectingBroker.close() stops reconnecting and fails what waits", async () => {
  const hub = new MemoryBroker();
  const broker = new ReconnectingBroker(hub.connect(), {
    connect: () => new Promise<Broker>(() => {}),
    policy: FAST,
  });
  hub.disconnectAll();
  const waiting = broker.publish("q", body("x"));
  await broker.close();
  await assert.rejects(waiting, BrokerUnavailableError);
  assert.equal(await broker.closed, undefined);
  await hub.shutdown();
});

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
async function callAcrossLoss(replies: "direct" | "queue") {
  const hub = new MemoryBroker();
  const worker = hub.connect("task_x");
  await worker.declareQueue("queue_x");
  const requests: Delivery[] = [];
  await worker.consume("queue_x", (delivery) => requests.push(delivery), { prefetch: 10 });
  const broker = reconnecting(hub);
  const client = await RpcClient.open(broker, { replies });
  try {
    const call = client.call("queue_x", "task_x", {}, { timeoutMs: 400 });
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

Deno.test("RpcClient with a reply queue gets the reply sent while it reconnected", async () => {
  const { outcome, client } = await callAcrossLoss("queue");
  assert.equal(outcome.kind, "reply");
  assert.match(client.replyTo, /^replies\.[0-9a-f]{32}$/);
});

Deno.test("RpcClient with Direct Reply-to loses the reply sent while it reconnected", async () => {
  const { outcome } = await callAcrossLoss("direct");
  assert.equal(outcome.kind, "timeout", "the reply went to the lost connection");
});

Deno.test("RpcClient.close() deletes its reply queue", async () => {
  const hub = new MemoryBroker();
  const broker = hub.connect("dispatcher");
  const client = await RpcClient.open(broker, { replies: "queue" });
  assert.notEqual(await broker.inspectQueue(client.replyTo), null);
  await client.close();
  assert.equal(await broker.inspectQueue(client.replyTo), null);
  await hub.shutdown();
});
