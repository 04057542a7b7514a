import assert from "node:assert/strict";
import type { Message } from "../contract/message.ts";
import { waitFor } from "../../tests/_helpers.ts";
import { type Broker, BrokerUnavailableError, type Delivery } from "./broker.ts";
import { MemoryBroker } from "./memory/memory_broker.ts";
import {
  type ConnectionEvent,
  describeConnectionEvent,
  ReconnectingBroker,
} from "./reconnecting.ts";

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

Deno.test("describeConnectionEvent() words each event as the workers log it", () => {
  const lost = new BrokerUnavailableError("the node went away");
  assert.equal(
    describeConnectionEvent({ kind: "lost", error: lost }),
    "Lost the broker connection; reconnecting: the node went away",
  );
  assert.equal(
    describeConnectionEvent({ kind: "retrying", attempt: 2, delayMs: 400, error: lost }),
    "Broker not reachable; retrying (attempt 2, in 400 ms): the node went away",
  );
  assert.equal(
    describeConnectionEvent({ kind: "reconnected", attempts: 3, downMs: 1234.6 }),
    "Reconnected to the broker after 1235 ms (attempt 3)",
  );
  assert.equal(describeConnectionEvent({ kind: "gave-up", error: lost }), "the node went away");
});

Deno.test("ReconnectingBroker forgets the consumers of a queue it deleted, and reconnects without them", async () => {
  const hub = new MemoryBroker();
  const events: ConnectionEvent[] = [];
  const broker = reconnecting(hub, events);
  try {
    await broker.declareQueue("replies.own", { durable: true, type: "quorum" });
    await broker.consume("replies.own", (delivery) => broker.ack(delivery), { prefetch: 10 });
    // As a client closing: its queue goes, then its node does.
    await broker.deleteQueue("replies.own");
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
    assert.equal(await broker.inspectQueue("replies.own"), null, "not declared again either");
  } finally {
    await broker.close();
    await hub.shutdown();
  }
});
