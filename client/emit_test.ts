import assert from "node:assert/strict";
import { MemoryBroker, PublishForbiddenError } from "../core/broker/mod.ts";
import { CLOUD_EVENTS_EXCHANGE, parseCloudEvent } from "../core/contract/mod.ts";
import { buildEvent, emitEvent } from "./emit.ts";

Deno.test("buildEvent() refuses a bad type, data that is no object, and data over the limit", () => {
  assert.throws(
    () => buildEvent("u", "order created", {}),
    /Cannot emit event type "order created"/,
  );
  assert.throws(() => buildEvent("u", "order.*", {}), /not|Cannot emit/);
  assert.throws(() => buildEvent("u", "a.b", [1]), /data that is an array: give a JSON object/);
  assert.throws(() => buildEvent("u", "a.b", { big: "x".repeat(2 * 1024 * 1024) }), /limit/);
  assert.throws(() => buildEvent("u", "a.b", {}, { subject: "line\nbreak" }), /Cannot emit/);
  const event = buildEvent("dispatcher", "a.b", { n: 1 }, { id: "i", deadline: 0 });
  assert.equal(event.source, "/clients/dispatcher");
  assert.equal(event.deadline, "1970-01-01T00:00:00.000Z");
});

Deno.test("emitEvent() publishes to the events exchange by type, with reply_to when asked", async () => {
  const hub = new MemoryBroker();
  const broker = hub.connect("dispatcher");
  try {
    await broker.declareExchange(CLOUD_EVENTS_EXCHANGE, "topic");
    await broker.declareQueue("seen");
    await broker.bindQueue("seen", CLOUD_EVENTS_EXCHANGE, "a.#");
    const id = await emitEvent(broker, "a.b", { n: 1 }, { replyTo: "replies.x", mode: "binary" });
    const delivery = await broker.get("seen");
    assert.ok(delivery);
    assert.equal(delivery.routingKey, "a.b");
    assert.equal(delivery.properties.replyTo, "replies.x");
    assert.equal(delivery.properties.correlationId, id);
    const read = parseCloudEvent(delivery, { maxBytes: 1024, routingKey: "a.b" });
    assert.ok(read.ok);
    assert.equal(read.value.id, id);
    assert.deepEqual(read.value.data, { n: 1 });
  } finally {
    await hub.shutdown();
  }
});

Deno.test("emitEvent() says which grant a refused type needs", async () => {
  const hub = new MemoryBroker();
  const real = hub.connect("dispatcher");
  const refusing = Object.assign(Object.create(real), {
    user: "dispatcher",
    declareExchange: () => Promise.resolve(false),
    publishToExchange: (exchange: string, _m: unknown, routingKey: string) =>
      Promise.reject(new PublishForbiddenError("refused", { exchange, routingKey })),
  });
  try {
    await assert.rejects(
      emitEvent(refusing, "order.created", {}),
      (error: Error) =>
        error instanceof PublishForbiddenError && error.routingKey === "order.created" &&
        /events\.emitters: \{ dispatcher: \["order\.created"\] \}/.test(error.message),
    );
  } finally {
    await hub.shutdown();
  }
});
