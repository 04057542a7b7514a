import assert from "node:assert/strict";
import { type Broker, type Delivery, MemoryBroker } from "../core/broker/mod.ts";
import {
  encodeRequest,
  type Message,
  parseDeadLetter,
  parseReply,
  type TaskReply,
} from "../core/contract/mod.ts";
import { defineFunction } from "../runtime/define_function.ts";
import { deadLetterQueueOf } from "../core/contract/mod.ts";
import { startWorker } from "../runtime/worker/consumer.ts";
import { inProcessRunner } from "../runtime/handler_runner.ts";
import { waitFor } from "../tests/_helpers.ts";
import { letterPolicy } from "./dead_letter_trust.ts";
import { listDeadLetters, replayDeadLetters } from "./dead_letters.ts";

/** Everyone is guest: the bare broker's policy. */
const SHARED = letterPolicy(undefined, "guest");

const until = (check: () => boolean | Promise<boolean>, what: string) =>
  waitFor(check, what, 2000, 2);

/** A function that fails until `healthy` is set, and a worker running it. */
async function setup() {
  const state = { healthy: false };
  const flaky = defineFunction({
    name: "flaky",
    queue: "queue_flaky",
    retry: { maxRetries: 1, baseDelayMs: 1 },
    handler(payload) {
      if (!state.healthy) throw new Error("downstream is down");
      return `done ${payload.n}`;
    },
  });
  const hub = new MemoryBroker();
  const worker = await startWorker(inProcessRunner(flaky), hub.connect(), {
    workerId: "flaky@test",
  });
  const client = hub.connect();
  const replies: TaskReply[] = [];
  const replyTo = await client.openReplyQueue((m) => {
    const parsed = parseReply(m.body);
    if (parsed.ok) replies.push(parsed.value);
  });
  const dlq = deadLetterQueueOf(flaky.queue);
  const depth = async (queue: string) => (await client.inspectQueue(queue))?.messages ?? -1;
  return { state, hub, worker, client, replies, replyTo, dlq, depth, queue: flaky.queue };
}

Deno.test("listDeadLetters() describes each letter and leaves the queue as it was", async () => {
  const t = await setup();
  try {
    for (const n of [1, 2, 3]) {
      await t.client.publish(
        t.queue,
        encodeRequest("flaky", { n }, { taskId: `t${n}`, replyTo: t.replyTo }),
      );
    }
    await t.client.publish(t.queue, {
      body: new TextEncoder().encode("not json"),
      properties: { contentType: "application/json", messageId: "bad" },
    });
    await until(async () => (await t.depth(t.dlq)) === 4, "four dead letters");
    const letters = await listDeadLetters(t.client, t.dlq, { limit: 10 });
    assert.equal(letters.length, 4);
    assert.equal(await t.depth(t.dlq), 4, "listing removes nothing");
    const exhausted = letters.filter((l) => l.reason === "exhausted");
    assert.deepEqual(exhausted.map((l) => l.taskId).sort(), ["t1", "t2", "t3"]);
    assert.equal(exhausted[0].errorType, "Error");
    assert.equal(exhausted[0].errorMessage, "downstream is down");
    assert.equal(exhausted[0].attempts, 2);
    assert.equal(exhausted[0].queue, t.queue);
    assert.equal(exhausted[0].worker, "flaky@test");
    const rejected = letters.find((l) => l.reason === "rejected")!;
    assert.equal(rejected.body, "not json");
    assert.equal(rejected.errorType, "InvalidJson");

    const again = await listDeadLetters(t.client, t.dlq, { limit: 10 });
    // The same letters. Their order after a listing is the broker's: RabbitMQ
    // keeps it (tests/reliability_test.ts checks), while the MemoryBroker puts
    // each returned letter at the head, so letters returned in delivery
    // order come back reversed there.
    assert.deepEqual(
      again.map((l) => l.taskId).sort(),
      letters.map((l) => l.taskId).sort(),
      "the same letters",
    );
    assert.equal((await listDeadLetters(t.client, t.dlq, { limit: 2 })).length, 2);
    const onlyRejected = await listDeadLetters(t.client, t.dlq, { limit: 10, reason: "rejected" });
    assert.deepEqual(onlyRejected.map((l) => l.taskId), ["bad"]);
  } finally {
    await t.worker.stop(0);
    await t.hub.shutdown();
  }
});

Deno.test("replayDeadLetters() sends letters back as new requests that then succeed", async () => {
  const t = await setup();
  try {
    for (const n of [1, 2]) {
      await t.client.publish(
        t.queue,
        encodeRequest("flaky", { n }, { taskId: `t${n}`, replyTo: t.replyTo }),
      );
    }
    await until(() => t.replies.length === 2, "two error replies");
    assert.ok(t.replies.every((r) => r.status === "error" && r.attempts === 2));
    t.state.healthy = true;
    const result = await replayDeadLetters(t.client, t.dlq, {
      limit: 10,
      reason: "exhausted",
      policy: letterPolicy("flaky", t.client.user),
    });
    assert.equal(result.replayed.length, 2);
    assert.equal(result.skipped, 0);
    assert.equal(await t.depth(t.dlq), 0);
    await until(() => t.replies.length === 4, "replies to the replayed requests");
    const replayed = t.replies.slice(2);
    assert.deepEqual(replayed.map((r) => r.result).sort(), ["done 1", "done 2"]);
    assert.ok(replayed.every((r) => r.attempts === 1), "attempts start again at 1");
  } finally {
    await t.worker.stop(0);
    await t.hub.shutdown();
  }
});

Deno.test("replayDeadLetters() replays each letter once even when it fails again at once", async () => {
  const hub = new MemoryBroker();
  const inner = hub.connect();
  // A function that dead-letters every request before the publish returns.
  const broker: Broker = Object.assign(Object.create(inner), {
    get: inner.get.bind(inner),
    ack: inner.ack.bind(inner),
    nack: inner.nack.bind(inner),
    inspectQueue: inner.inspectQueue.bind(inner),
    publish: (queue: string, message: Message) =>
      inner.publish(queue === "queue_x" ? "queue_x.dlq" : queue, message),
  });
  try {
    await inner.declareQueue("queue_x");
    await inner.declareQueue("queue_x.dlq");
    for (const id of ["a", "b"]) {
      await inner.publish("queue_x.dlq", {
        body: new TextEncoder().encode("{}"),
        properties: {
          messageId: id,
          headers: {
            "x-dlq-reason": "exhausted",
            "x-dlq-queue": "queue_x",
            "x-dlq-sender": "dispatcher",
            "x-dlq-allowed-senders": "dispatcher,guest",
          },
        },
      });
    }
    const result = await replayDeadLetters(broker, "queue_x.dlq", { limit: 100, policy: SHARED });
    assert.deepEqual(result.replayed.map((l) => l.taskId), ["a", "b"]);
    assert.equal((await inner.inspectQueue("queue_x.dlq"))?.messages, 2);
  } finally {
    await hub.shutdown();
  }
});

Deno.test("replayDeadLetters() strips dead-letter headers, honours limit and reason", async () => {
  const hub = new MemoryBroker();
  const broker = hub.connect();
  try {
    await broker.declareQueue("queue_x");
    await broker.declareQueue("queue_x.dlq");
    const letter = (reason: string, id: string) =>
      broker.publish("queue_x.dlq", {
        body: new TextEncoder().encode(`{"task":"x","id":"${id}"}`),
        properties: {
          contentType: "application/json",
          messageId: id,
          headers: {
            "x-dlq-reason": reason,
            "x-dlq-queue": "queue_x",
            "x-dlq-attempts": 4,
            "x-dlq-sender": "dispatcher",
            "x-dlq-allowed-senders": "dispatcher,guest",
            "x-attempt": 4,
            "x-sender": "admin",
            "x-death": [{ reason: "expired", queue: "queue_x.retry.10", count: 1 }],
            "x-custom": "kept",
          },
        },
      });
    await letter("exhausted", "a");
    await letter("rejected", "b");
    await letter("exhausted", "c");
    const result = await replayDeadLetters(broker, "queue_x.dlq", {
      limit: 1,
      reason: "exhausted",
      policy: SHARED,
    });
    assert.deepEqual(result.replayed.map((l) => l.taskId), ["a"]);
    const moved = (await broker.get("queue_x")) as Delivery;
    const headers = moved.properties.headers!;
    assert.equal(headers["x-custom"], "kept");
    assert.equal(headers["x-replayed-from"], "queue_x.dlq");
    for (const dropped of ["x-attempt", "x-dlq-reason", "x-dlq-sender", "x-sender", "x-death"]) {
      assert.ok(!(dropped in headers), `${dropped} dropped`);
    }
    assert.equal(moved.properties.persistent, true);
    const rest = await listDeadLetters(broker, "queue_x.dlq", { limit: 10 });
    assert.deepEqual(rest.map((l) => l.taskId), ["b", "c"], "the others stay, in order");
    assert.equal(parseDeadLetter(moved, moved.queue).reason, "unknown");
  } finally {
    await hub.shutdown();
  }
});

Deno.test("replayDeadLetters() sends a letter to its dead-letter queue's own queue, whatever x-dlq-queue says", async () => {
  const hub = new MemoryBroker();
  const broker = hub.connect();
  try {
    for (const queue of ["queue_x", "queue_x.dlq", "queue_admin_only"]) {
      await broker.declareQueue(queue);
    }
    await broker.publish("queue_x.dlq", {
      body: new TextEncoder().encode("{}"),
      properties: {
        messageId: "m",
        headers: {
          "x-dlq-reason": "exhausted",
          "x-dlq-sender": "dispatcher",
          "x-dlq-allowed-senders": "dispatcher",
          "x-dlq-queue": "queue_admin_only",
        },
      },
    });
    const result = await replayDeadLetters(broker, "queue_x.dlq", { limit: 10, policy: SHARED });
    assert.equal(result.replayed.length, 1);
    assert.equal(result.replayed[0].queue, "queue_x");
    assert.equal((await broker.inspectQueue("queue_x"))?.messages, 1);
    assert.equal((await broker.inspectQueue("queue_admin_only"))?.messages, 0);
  } finally {
    await hub.shutdown();
  }
});

Deno.test("replayDeadLetters() leaves and reports every letter that does not prove its origin", async () => {
  const hub = new MemoryBroker();
  const operator = hub.connect("operator");
  const letter = (user: string, id: string, headers: Record<string, unknown>) =>
    hub.connect(user).publish("queue_x.dlq", {
      body: new TextEncoder().encode(`{"task":"task_x"}`),
      properties: { messageId: id, headers },
    });
  const written = (sender?: string, reason = "exhausted") => ({
    "x-dlq-reason": reason,
    "x-dlq-allowed-senders": "admin,dispatcher,operator,task_x",
    ...(sender === undefined ? {} : { "x-dlq-sender": sender }),
  });
  try {
    await operator.declareQueue("queue_x");
    await operator.declareQueue("queue_x.dlq");
    // The broker's own dead letters: a queue whose messages expire into the DLQ.
    await operator.declareQueue("queue_t", { messageTtlMs: 1, deadLetterQueue: "queue_x.dlq" });
    await letter("task_x", "by-worker", written("dispatcher"));
    await letter("task_x", "worker-for-admin", written("admin"));
    await letter("task_x", "from-other-function", written("task_y"));
    await letter("task_x", "no-sender", written());
    await letter("task_x", "refused-sender", written("dispatcher", "unauthenticated"));
    await letter("task_x", "unrecorded", { "x-dlq-reason": "exhausted", "x-dlq-sender": "admin" });
    await letter("task_y", "forged-by-task_y", written("dispatcher"));
    await letter("intruder", "no-death", { "x-custom": 1 });
    await hub.connect("dispatcher").publish("queue_t", {
      body: new TextEncoder().encode("{}"),
      properties: { messageId: "expired-by-dispatcher" },
    });
    await hub.connect("intruder").publish("queue_t", {
      body: new TextEncoder().encode("{}"),
      properties: { messageId: "expired-by-intruder" },
    });
    await until(
      async () => (await operator.inspectQueue("queue_x.dlq"))?.messages === 10,
      "ten letters",
    );

    const result = await replayDeadLetters(operator, "queue_x.dlq", {
      limit: 100,
      policy: letterPolicy("task_x", operator.user),
    });
    assert.deepEqual(
      result.replayed.map((l) => l.taskId),
      ["by-worker", "worker-for-admin", "expired-by-dispatcher"],
    );
    const refused = Object.fromEntries(result.refused.map((r) => [r.letter.taskId, r.why]));
    assert.deepEqual(Object.keys(refused).sort(), [
      "expired-by-intruder",
      "forged-by-task_y",
      "from-other-function",
      "no-death",
      "no-sender",
      "refused-sender",
      "unrecorded",
    ]);
    assert.match(refused["forged-by-task_y"], /user_id is 'task_y', not the function's workers'/);
    assert.match(
      refused["from-other-function"],
      /sender 'task_y' may not call the function \(it accepts: admin, dispatcher, operator, task_x\)/,
    );
    assert.match(refused["refused-sender"], /refused its sender 'dispatcher' \(unauthenticated\)/);
    assert.match(refused["unrecorded"], /did not record the senders it accepts/);
    assert.match(refused["no-sender"], /recorded no sender/);
    assert.match(refused["expired-by-intruder"], /broker dead-lettered it.*'intruder'/);
    assert.match(refused["no-death"], /neither a worker .* nor the broker/);
    assert.equal((await operator.inspectQueue("queue_x.dlq"))?.messages, 7, "refused letters stay");
    const replayed = (await operator.get("queue_x"))!;
    assert.equal(replayed.properties.userId, "operator", "replayed as the operator");
    assert.equal(replayed.properties.headers?.["x-replayed-sender"], "dispatcher");
  } finally {
    await hub.shutdown();
  }
});

Deno.test("replay judges a letter's sender by the function's own senders, never the default ones", async () => {
  // A function that accepts the operator and admin only, not the dispatcher.
  const runs: string[] = [];
  const guarded = defineFunction({
    name: "guarded",
    queue: "queue_guarded",
    retry: { maxRetries: 0 },
    handler(payload) {
      runs.push(String(payload.who));
      if (payload.fail) throw new Error("failed");
      return "ran";
    },
  });
  const hub = new MemoryBroker();
  const worker = await startWorker(inProcessRunner(guarded), hub.connect("guarded"), {
    workerId: "guarded@test",
    allowedSenders: ["operator", "admin"],
  });
  const operator = hub.connect("operator");
  const dlq = deadLetterQueueOf(guarded.queue);
  const letters = async () => (await operator.inspectQueue(dlq))?.messages ?? -1;
  const request = (who: string, fail = false) =>
    encodeRequest("guarded", { who, fail }, { taskId: who });
  try {
    // Refused by the worker: its letter says unauthenticated, sender dispatcher.
    await hub.connect("dispatcher").publish(guarded.queue, request("dispatcher"));
    // Run and failed: a letter whose sender, admin, the worker accepts.
    await hub.connect("admin").publish(guarded.queue, request("admin", true));
    // Dead-lettered by the broker before any worker saw it: the dispatcher's again.
    await operator.declareQueue("queue_guarded_wait", { messageTtlMs: 1, deadLetterQueue: dlq });
    await hub.connect("dispatcher").publish("queue_guarded_wait", request("expired"));
    await until(async () => (await letters()) === 3, "three letters");
    assert.deepEqual(runs, ["admin"]);

    const result = await replayDeadLetters(operator, dlq, {
      limit: 10,
      policy: letterPolicy("guarded", operator.user),
    });
    assert.deepEqual(result.refused.map((r) => r.letter.taskId), ["dispatcher"]);
    assert.match(result.refused[0].why, /refused its sender 'dispatcher' \(unauthenticated\)/);
    assert.deepEqual(result.replayed.map((l) => l.taskId).sort(), ["admin", "expired"]);
    // The broker's letter proves its sender to the tool, but the worker
    // judges that sender by its own list: the dispatcher's request never runs.
    await until(async () => (await letters()) === 3, "the refused copy back as a letter");
    await until(() => runs.length === 2, "admin's request ran again");
    assert.deepEqual(runs, ["admin", "admin"]);
    const kept = await listDeadLetters(operator, dlq, { limit: 10 });
    const again = kept.find((l) => l.taskId === "expired")!;
    assert.equal(again.reason, "unauthenticated");
    assert.equal(again.sender, "dispatcher");
    assert.match(again.errorMessage, /replayed by 'operator' for broker user 'dispatcher'/);
    assert.equal(worker.stats.unauthenticated, 2);
  } finally {
    await worker.stop(0);
    await hub.shutdown();
  }
});
