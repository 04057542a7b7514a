import assert from "node:assert/strict";
import {
  chainedEventId,
  type CloudEvent,
  encodeCloudEvent,
  exactRegex,
  isCloudEventMessage,
  parseCloudEvent,
  topicMatches,
  topicPatternProblem,
  topicPatternRegex,
} from "./cloud_events.ts";

const EVENT: CloudEvent = {
  specversion: "1.0",
  id: "id-1",
  source: "/test",
  type: "order.created",
  subject: "order-42",
  time: "2026-12-06T10:00:00Z",
  datacontenttype: "application/json",
  hops: 2,
  data: { order: 42 },
};

Deno.test("parseCloudEvent() reads back what encodeCloudEvent() writes, in both modes", () => {
  for (const mode of ["structured", "binary"] as const) {
    const message = encodeCloudEvent(EVENT, mode);
    assert.ok(isCloudEventMessage(message), mode);
    const read = parseCloudEvent(message, { maxBytes: 1024, routingKey: "order.created" });
    assert.ok(read.ok, mode);
    assert.deepEqual(read.value, EVENT, mode);
  }
  const binary = encodeCloudEvent(EVENT, "binary");
  assert.equal(binary.properties.headers?.["ce-type"], "order.created");
  assert.equal(binary.properties.contentType, "application/json");
  assert.equal(encodeCloudEvent(EVENT).properties.contentType, "application/cloudevents+json");
});

Deno.test("parseCloudEvent() takes the AMQP binding's cloudEvents: and cloudEvents_ prefixes", () => {
  for (const prefix of ["cloudEvents:", "cloudEvents_"]) {
    const read = parseCloudEvent({
      body: new TextEncoder().encode('{"a":1}'),
      properties: {
        contentType: "application/json; charset=utf-8",
        headers: {
          [`${prefix}specversion`]: "1.0",
          [`${prefix}id`]: "x",
          [`${prefix}source`]: "/sdk",
          [`${prefix}type`]: "a.b",
        },
      },
    }, { maxBytes: 1024 });
    assert.ok(read.ok, prefix);
    assert.deepEqual(read.value.data, { a: 1 });
  }
});

Deno.test("parseCloudEvent() refuses every bad attribute with the reason", () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ specversion: "0.3" }, /specversion/],
    [{ id: "" }, /'id' is ''/],
    [{ id: "x".repeat(257) }, /1 to 256 characters/],
    [{ source: 5 }, /of type number/],
    [{ type: "order..created" }, /not an event type/],
    [{ time: "yesterday" }, /RFC 3339/],
    [{ hops: -1 }, /hops/],
    [{ data: "text" }, /data is string/],
    [{ data_base64: "AA==" }, /binary/],
    [{ "Bad-Name": 1 }, /no CloudEvents name/],
    [{ subject: "line\nbreak" }, /printable/],
  ];
  for (const [change, reason] of cases) {
    const event = { ...EVENT, ...change };
    const read = parseCloudEvent(
      {
        body: new TextEncoder().encode(JSON.stringify(event)),
        properties: { contentType: "application/cloudevents+json" },
      },
      { maxBytes: 4096 },
    );
    assert.ok(!read.ok, JSON.stringify(change));
    assert.match(read.error.message, reason, JSON.stringify(change));
  }
  const other = parseCloudEvent(encodeCloudEvent(EVENT), { maxBytes: 4096, routingKey: "x.y" });
  assert.ok(!other.ok);
  assert.match(other.error.message, /not the routing key 'x.y'/);
  const big = parseCloudEvent(encodeCloudEvent(EVENT), { maxBytes: 10 });
  assert.ok(!big.ok);
  assert.equal(big.error.type, "MessageTooLarge");
});

Deno.test("topicPatternRegex() matches exactly what RabbitMQ's topic routing matches", () => {
  const patterns = [
    "order.created",
    "order.*",
    "order.#",
    "#",
    "#.created",
    "a.#.b",
    "*.*",
    "#.a.#",
  ];
  const types = ["order", "order.created", "order.created.v2", "a.b", "a.x.y.b", "created", "a.a"];
  for (const pattern of patterns) {
    assert.equal(topicPatternProblem(pattern), undefined, pattern);
    const regex = new RegExp(topicPatternRegex(pattern));
    for (const type of types) {
      assert.equal(regex.test(type), topicMatches(pattern, type), `${pattern} on ${type}`);
    }
  }
  assert.equal(topicMatches("order.#", "order"), true);
  assert.equal(topicMatches("order.*", "order"), false);
  assert.doesNotMatch(topicPatternRegex("order.*"), /[{}]/, "no braces for RabbitMQ to expand");
  assert.match(topicPatternProblem("order.#.#")!, /# twice/);
  assert.match(topicPatternProblem("order created")!, /not a topic pattern/);
  assert.equal(new RegExp(exactRegex(["a.*"])).test("a.b"), false, "a binding key, not a pattern");
});

Deno.test("chainedEventId() is the same for the same step and trigger, another for another", async () => {
  const one = await chainedEventId("step_a", "/clients/x", "id-1");
  assert.equal(one, await chainedEventId("step_a", "/clients/x", "id-1"));
  assert.notEqual(one, await chainedEventId("step_b", "/clients/x", "id-1"));
  assert.notEqual(one, await chainedEventId("step_a", "/clients/y", "id-1"));
  assert.match(one, /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
});
