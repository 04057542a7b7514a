import assert from "node:assert/strict";
import {
  DEAD_LETTER_TEXT_LIMITS,
  encodeDeadLetter,
  isDeadLetterHeader,
  type Message,
  parseDeadLetter,
  replayHeaders,
} from "./mod.ts";

const letterOf = (headers: Record<string, unknown>, userId = "dispatcher"): Message => ({
  body: new Uint8Array(),
  properties: { headers, userId },
});

Deno.test("parseDeadLetter() takes the broker's reason and delivery count when no worker wrote one", () => {
  const limit = parseDeadLetter(
    letterOf({
      "x-first-death-reason": "delivery_limit",
      "x-death": [{ reason: "delivery_limit", queue: "queue_x", count: 1 }],
      "x-delivery-count": 5,
    }),
    "queue_x.dlq",
  );
  assert.equal(limit.reason, "delivery_limit");
  assert.equal(limit.errorType, "Broker");
  assert.equal(limit.deliveries, 5);
  assert.equal(limit.queue, "queue_x");
  assert.equal(limit.userId, "dispatcher");
  const expired = parseDeadLetter(letterOf({ "x-death": [{ reason: "expired" }] }), "queue_x.dlq");
  assert.equal(expired.reason, "expired");
  assert.equal(expired.deliveries, null);
  const worker = parseDeadLetter(
    letterOf({
      "x-dlq-reason": "delivery_limit",
      "x-dlq-deliveries": 5,
      "x-delivery-count": 4,
      "x-dlq-sender": "admin",
    }),
    "queue_x.dlq",
  );
  assert.equal(worker.reason, "delivery_limit");
  assert.equal(worker.deliveries, 5, "the worker's own count first");
  assert.equal(worker.sender, "admin");
  assert.equal(parseDeadLetter(letterOf({}), "queue_x.dlq").reason, "unknown");
});

Deno.test("parseDeadLetter() bounds every header text it takes from a forged letter", () => {
  const junk = "\u0001".repeat(100_000);
  const letter = parseDeadLetter({
    body: new TextEncoder().encode("{}"),
    properties: {
      messageId: "m".repeat(1000),
      userId: "u".repeat(1000),
      headers: {
        "x-dlq-reason": junk,
        "x-dlq-error-type": junk,
        "x-dlq-error-message": junk,
        "x-dlq-worker": junk,
        "x-dlq-sender": junk,
        "x-dlq-at": junk,
      },
    },
  }, "queue_x.dlq");
  const limits = DEAD_LETTER_TEXT_LIMITS;
  const fields: [string | null, number][] = [
    [letter.reason, limits.reason],
    [letter.errorType, 64],
    [letter.errorMessage, 512],
    [letter.worker, limits.worker],
    [letter.sender, limits.sender],
    [letter.at, limits.at],
    [letter.taskId, 255],
    [letter.userId, 255],
  ];
  for (const [value, max] of fields) {
    assert.ok(value !== null && value.length <= max, `${value?.slice(-40)} within ${max}`);
    assert.match(value!, /more characters\)$/, "says it was cut");
  }
  const broker = parseDeadLetter(letterOf({ "x-death": [{ reason: junk }] }), "queue_x.dlq");
  assert.ok(broker.reason.length <= limits.reason, "the broker's reason too");
});

Deno.test("encodeDeadLetter() adds the worker's record to the request's own headers, every text bounded", () => {
  const request: Message = {
    body: new TextEncoder().encode('{"task":"task_a"}'),
    properties: { messageId: "t1", persistent: true, headers: { "x-custom": "kept" } },
  };
  const letter = encodeDeadLetter(request, {
    reason: "exhausted",
    error: { type: "T".repeat(1000), message: "m".repeat(10_000) },
    attempts: 3,
    queue: "queue_a",
    worker: "w".repeat(1000),
    allowedSenders: ["task_a", "*", "s".repeat(5000)],
    sender: "x".repeat(1000),
    at: new Date(0),
  });
  const headers = letter.properties.headers!;
  assert.equal(headers["x-custom"], "kept");
  assert.equal(headers["x-dlq-reason"], "exhausted");
  assert.equal(headers["x-dlq-attempts"], 3);
  assert.equal(headers["x-dlq-queue"], "queue_a");
  assert.equal(headers["x-dlq-at"], "1970-01-01T00:00:00.000Z");
  assert.equal(headers["x-dlq-deliveries"], undefined);
  assert.equal(headers["x-dlq-body-bytes"], undefined);
  const bounds: [string, number][] = [
    ["x-dlq-error-type", 64],
    ["x-dlq-error-message", 512],
    ["x-dlq-worker", 128],
    ["x-dlq-sender", 128],
    ["x-dlq-allowed-senders", 1024],
  ];
  for (const [name, max] of bounds) {
    const value = String(headers[name]);
    assert.ok(value.length <= max, `${name}: ${value.length} within ${max}`);
    assert.match(value, /more characters\)$/, `${name} says it was cut`);
  }
  assert.match(String(headers["x-dlq-allowed-senders"]), /^\*,s/, "sorted");
  assert.equal(letter.properties.messageId, "t1");
  assert.deepEqual(letter.body, request.body);
  // What the worker reads back is what it wrote.
  const parsed = parseDeadLetter(letter, "queue_a.dlq");
  assert.equal(parsed.reason, "exhausted");
  assert.equal(parsed.attempts, 3);
  assert.equal(parsed.taskId, "t1");
});

Deno.test("encodeDeadLetter() of a body too large keeps its size, not the body", () => {
  const letter = encodeDeadLetter({ body: new Uint8Array(5000), properties: {} }, {
    reason: "rejected",
    error: { type: "MessageTooLarge", message: "too large" },
    attempts: 1,
    queue: "queue_a",
    worker: "w",
    allowedSenders: ["dispatcher"],
    deliveries: 2,
    dropBody: true,
  });
  assert.equal(letter.body.byteLength, 0);
  assert.equal(letter.properties.headers?.["x-dlq-body-bytes"], 5000);
  assert.equal(letter.properties.headers?.["x-dlq-deliveries"], 2);
});

Deno.test("replayHeaders() drops the records of the death and of earlier attempts, and marks the replay", () => {
  const headers = replayHeaders({
    "x-custom": "kept",
    traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "x-sent-at": 1,
    "x-attempt": 3,
    "x-sender": "dispatcher",
    "x-delivery-count": 2,
    "x-prior-deliveries": 1,
    "x-dlq-reason": "exhausted",
    "x-dlq-headers-dropped": true,
    "x-death": [],
    "x-first-death-reason": "expired",
    "x-last-death-queue": "queue_x",
    "x-replayed-sender": "forged",
  }, { from: "queue_x.dlq", sender: "admin", now: 86_400_000 });
  assert.deepEqual(headers, {
    "x-custom": "kept",
    traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "x-sent-at": 86_400_000,
    "x-replayed-from": "queue_x.dlq",
    "x-replayed-at": "1970-01-02T00:00:00.000Z",
    "x-replayed-sender": "admin",
  });
  assert.equal(replayHeaders(undefined, { from: "q.dlq", sender: "a" })["x-sent-at"], undefined);
});

Deno.test("isDeadLetterHeader() names the headers only the runtime writes on a dead letter", () => {
  assert.ok(isDeadLetterHeader("x-dlq-reason"));
  assert.ok(isDeadLetterHeader("x-dlq-anything"));
  assert.ok(!isDeadLetterHeader("x-dlqreason"));
  assert.ok(!isDeadLetterHeader("x-sender"));
});
