import assert from "node:assert/strict";
import type { Broker, Delivery } from "../functions/_runtime/broker/broker.ts";
import {
  encodeRequest,
  type Message,
  parseReply,
  type TaskReply,
} from "../functions/_runtime/contract/mod.ts";
import { defineFunction } from "../functions/_runtime/define_function.ts";
import { MemoryBroker } from "../functions/_runtime/broker/memory_broker.ts";
import { deadLetterQueueOf } from "../functions/_runtime/contract/mod.ts";
import { startWorker } from "../functions/_runtime/worker/start_worker.ts";
import { inProcessRunner } from "../functions/_runtime/worker/runner.ts";
import { describeDeadLetter, listDeadLetters, replayDeadLetters } from "./dead_letters.ts";

async function until(check: () => boolean | Promise<boolean>, what: string) {
  const deadline = Date.now() + 2000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

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
    assert.deepEqual(again.map((l) => l.taskId), letters.map((l) => l.taskId), "order kept");
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
    const result = await replayDeadLetters(t.client, t.dlq, { limit: 10, reason: "exhausted" });
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
          headers: { "x-dlq-reason": "exhausted", "x-dlq-queue": "queue_x" },
        },
      });
    }
    const result = await replayDeadLetters(broker, "queue_x.dlq", { limit: 100 });
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
            "x-attempt": 4,
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
    });
    assert.deepEqual(result.replayed.map((l) => l.taskId), ["a"]);
    const moved = (await broker.get("queue_x")) as Delivery;
    const headers = moved.properties.headers!;
    assert.equal(headers["x-custom"], "kept");
    assert.equal(headers["x-replayed-from"], "queue_x.dlq");
    assert.ok(!("x-attempt" in headers) && !("x-dlq-reason" in headers));
    assert.equal(moved.properties.persistent, true);
    const rest = await listDeadLetters(broker, "queue_x.dlq", { limit: 10 });
    assert.deepEqual(rest.map((l) => l.taskId), ["b", "c"], "the others stay, in order");
    assert.equal(describeDeadLetter(moved).reason, "unknown");
  } finally {
    await hub.shutdown();
  }
});
