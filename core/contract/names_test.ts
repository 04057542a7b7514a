import assert from "node:assert/strict";
import {
  DEAD_LETTER_REASONS,
  encodeCeleryReply,
  encodeReply,
  isOneJsonValue,
  isReplyDestination,
  namedReplyQueueOf,
  nearestRetryDelay,
  ownerOfNamedReplyQueue,
  parseReply,
  replyQueueName,
  replyToError,
  RETRY_DELAYS_MS,
  retryDelayAtMost,
  retryQueuesOf,
  type TaskReply,
} from "./mod.ts";

const UUID = "0b7e5a52-6f1c-4d3e-9c1a-2f4b6d8e0a1c";
const DIRECT = "amq.rabbitmq.reply-to.g1h2AA5yZXBseUAyNzk5NjE0ORgAAAAAAAAAAQ==.Zm9vYmFy";

Deno.test("isReplyDestination() takes only places made for answers, per kind", () => {
  for (const kind of ["reply", "celery", "pong"] as const) {
    assert.ok(isReplyDestination("amq.rabbitmq.reply-to", kind), kind);
    assert.ok(isReplyDestination(DIRECT, kind), kind);
  }
  assert.ok(isReplyDestination(replyQueueName(), "reply"));
  assert.ok(isReplyDestination(replyQueueName(), "pong"));
  assert.ok(
    !isReplyDestination(replyQueueName(), "celery"),
    "a native reply queue is not Celery's",
  );
  assert.ok(isReplyDestination(UUID, "celery"));
  assert.ok(
    !isReplyDestination(UUID, "reply"),
    "a Celery client's queue takes Celery results only",
  );
  assert.ok(!isReplyDestination(UUID, "pong"));
  const never = [
    "queue_b",
    "queue_a",
    "queue_a.dlq",
    "queue_a.retry.1000",
    "queue_a.control.deadbeef",
    "tasks.control",
    "replies.XYZ",
    `replies.${"0".repeat(31)}`,
    UUID.toUpperCase(),
    `${UUID}.x`,
    "amq.rabbitmq.reply-tox",
    "amq.rabbitmq.reply-to.",
    `amq.rabbitmq.reply-to.${"a".repeat(300)}`,
    "amq.gen-JzTY20BRgKO-HjmUJj0wLg",
    "",
  ];
  for (const name of never) {
    for (const kind of ["reply", "celery", "pong"] as const) {
      assert.ok(!isReplyDestination(name, kind), `${kind} to '${name}'`);
    }
  }
});

Deno.test("replyToError() says what a reply_to may be, and accepts none at all", () => {
  assert.equal(replyToError(undefined, "reply"), undefined);
  assert.equal(replyToError("", "celery"), undefined);
  assert.equal(replyToError(DIRECT, "reply"), undefined);
  const native = replyToError("queue_b", "reply")!;
  assert.equal(native.type, "InvalidReplyTo");
  assert.match(
    native.message,
    /^Cannot answer to reply_to 'queue_b' as it is not a reply destination: use Direct Reply-to \(amq\.rabbitmq\.reply-to\) or a reply queue of your own named replies\.<32 hex digits> or replies\.named\.<your broker user>\.<name>$/,
  );
  assert.match(replyToError("queue_b", "celery")!.message, /Celery client's reply queue \(a UUID/);
  assert.ok(replyToError("q".repeat(10_000), "reply")!.message.length < 400, "bounded");
  assert.ok(DEAD_LETTER_REASONS.includes("invalid_reply_to"));
});

Deno.test("RETRY_DELAYS_MS is a short fixed ladder from nothing to a day", () => {
  assert.ok(RETRY_DELAYS_MS.length <= 32, `${RETRY_DELAYS_MS.length} delays`);
  assert.equal(RETRY_DELAYS_MS[0], 0);
  assert.equal(RETRY_DELAYS_MS.at(-1), 86_400_000, "a day, the longest retry setting");
  for (let i = 1; i < RETRY_DELAYS_MS.length; i++) {
    assert.ok(RETRY_DELAYS_MS[i] > RETRY_DELAYS_MS[i - 1], "ascending");
    assert.ok(Number.isInteger(RETRY_DELAYS_MS[i]));
  }
  // The backoff's defaults land on delays of their own.
  for (const delay of [500, 1_000, 2_000, 30_000]) assert.ok(RETRY_DELAYS_MS.includes(delay));
  assert.equal(new Set(retryQueuesOf("queue_a")).size, RETRY_DELAYS_MS.length);
  assert.ok(retryQueuesOf("queue_a").every((name) => /^queue_a\.retry\.\d+$/.test(name)));
});

Deno.test("nearestRetryDelay() rounds to the nearest delay, retryDelayAtMost() never beyond", () => {
  const cases: [number, number, number][] = [
    // ms, nearest, at most
    [0, 0, 0],
    [4, 5, 0],
    [7, 5, 5],
    [240, 200, 200],
    [260, 300, 200],
    [1_234, 1_000, 1_000],
    [1_260, 1_500, 1_000],
    [44_000, 30_000, 30_000],
    [46_000, 60_000, 30_000],
    [90_000_000, 86_400_000, 86_400_000],
  ];
  for (const [ms, nearest, atMost] of cases) {
    assert.equal(nearestRetryDelay(ms), nearest, `nearest to ${ms}`);
    assert.equal(retryDelayAtMost(ms), atMost, `at most ${ms}`);
  }
  // A tie goes to the shorter wait; a restricted ladder is honoured.
  assert.equal(nearestRetryDelay(250), 200);
  assert.equal(nearestRetryDelay(240, [0, 300, 1_000]), 300);
});

Deno.test("isOneJsonValue() takes exactly one JSON value", () => {
  for (const text of ['"x"', "1", "null", '{"a":[1,2]}', " [1] ", "true"]) {
    assert.ok(isOneJsonValue(text), text);
  }
  for (const text of ['"x","status":"error"', "1}", "{", "1 2", "", "undefined", "'x'", "[1]]"]) {
    assert.ok(!isOneJsonValue(text), text);
  }
});

const REPLY: TaskReply = {
  task_id: "t1",
  task: "task_a",
  status: "success",
  result: null,
  error: null,
  worker: "task_a@real",
  queue: "queue_a",
  attempts: 1,
  started_at: "2026-01-01T00:00:00.000Z",
  finished_at: "2026-01-01T00:00:00.100Z",
  duration_ms: 100,
};

Deno.test("encodeReply() and encodeCeleryReply() put the runtime's fields after the result, where they win", () => {
  const forged =
    '"x","status":"error","worker":"forged@elsewhere","attempts":99,"error":{"type":"Forged","message":"no"}';
  const native = parseReply(encodeReply(REPLY, "t1", { resultJson: forged }).body);
  assert.ok(native.ok, JSON.stringify(native));
  assert.equal(native.value.status, "success");
  assert.equal(native.value.worker, "task_a@real");
  assert.equal(native.value.attempts, 1);
  assert.equal(native.value.error, null);
  assert.equal(native.value.result, "x");
  const celery = JSON.parse(
    new TextDecoder().decode(
      encodeCeleryReply("id-1", {
        ok: true,
        resultJson: '1,"status":"FAILURE","task_id":"other","children":[1]',
      }).body,
    ),
  );
  assert.equal(celery.status, "SUCCESS");
  assert.equal(celery.task_id, "id-1");
  assert.deepEqual(celery.children, []);
  assert.equal(celery.result, 1);
});

Deno.test("isReplyDestination() takes a named caller's queue for replies and pongs to its own user only", () => {
  const queue = namedReplyQueueOf("dispatcher", "nightly-run_1");
  assert.equal(queue, "replies.named.dispatcher.nightly-run_1");
  assert.equal(ownerOfNamedReplyQueue(queue), "dispatcher");
  for (const kind of ["reply", "pong"] as const) {
    assert.ok(isReplyDestination(queue, kind, "dispatcher"), kind);
    // Another sender cannot make the worker write into it as the function's user.
    assert.ok(!isReplyDestination(queue, kind, "operator"), `${kind} for another user`);
    assert.ok(!isReplyDestination(queue, kind), `${kind} for an unknown sender`);
  }
  assert.ok(!isReplyDestination(queue, "celery", "dispatcher"));
  assert.equal(replyToError(queue, "reply", "dispatcher"), undefined);
  assert.equal(replyToError(queue, "reply", "task_b")?.type, "InvalidReplyTo");
  // No function-owned queue has the shape: a function's queue has no dot.
  for (
    const name of ["replies.named.dispatcher", "replies.named.Dispatcher.x", "replies.named.d.x.y"]
  ) {
    assert.equal(ownerOfNamedReplyQueue(name), undefined, name);
  }
  assert.throws(() => namedReplyQueueOf("dispatcher", "Bad Name"), /Cannot use the caller name/);
  assert.throws(() => namedReplyQueueOf("dispatcher", "x".repeat(65)), /1 to 64/);
  assert.throws(() => namedReplyQueueOf("a.b", "x"), /not lower_snake_case/);
});
