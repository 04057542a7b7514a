import assert from "node:assert/strict";
import { MemoryBroker } from "../../core/broker/mod.ts";
import { encodeRequest, parseReply, type TaskReply } from "../../core/contract/mod.ts";
import { defineFunction } from "../define_function.ts";
import { simulateWork } from "../simulate_work.ts";
import { AnsweredTasks, fingerprintOf } from "./answered_tasks.ts";
import { WorkerMetrics } from "./observe.ts";
import { inProcessRunner } from "../handler_runner.ts";
import { startWorker } from "./consumer.ts";
import { waitFor } from "../../tests/_helpers.ts";

function reply(taskId: string, result = ""): { reply: TaskReply; resultJson: string } {
  const now = new Date().toISOString();
  return {
    reply: {
      task_id: taskId,
      task: "t",
      status: "success",
      result: null,
      error: null,
      worker: "w",
      queue: "q",
      attempts: 1,
      started_at: now,
      finished_at: now,
      duration_ms: 1,
    },
    resultJson: JSON.stringify(result),
  };
}

Deno.test("AnsweredTasks.claim() gives the answer of the same request, and runs a new one", async () => {
  const record = new AnsweredTasks();
  const key = AnsweredTasks.keyOf("dispatcher", "t1");
  const first = await record.claim(key, "1:a");
  assert.ok("release" in first, "the first copy runs");
  record.remember(key, "1:a", reply("t1", "done"));
  first.release();
  const again = await record.claim(key, "1:a");
  assert.ok("answer" in again, "a copy is answered from the record");
  assert.equal(again.answer.resultJson, '"done"');
  const reused = await record.claim(key, "1:b");
  assert.ok("release" in reused, "another body under the same task id runs");
  const otherSender = await record.claim(AnsweredTasks.keyOf("operator", "t1"), "1:a");
  assert.ok("release" in otherSender, "the same task id from another sender runs");
});

Deno.test("AnsweredTasks.claim() of a copy waits for the running one, then answers from it", async () => {
  const record = new AnsweredTasks();
  const key = AnsweredTasks.keyOf(undefined, "t2");
  const first = await record.claim(key, "f");
  assert.ok("release" in first);
  let settled = false;
  const pending = record.claim(key, "f");
  assert.ok(pending instanceof Promise, "a copy of a running request gets a promise");
  const copy = pending.then((claim) => {
    settled = true;
    return claim;
  });
  await new Promise((resolve) => setTimeout(resolve, 5));
  assert.equal(settled, false, "the copy waits while the first runs");
  record.remember(key, "f", reply("t2"));
  first.release();
  assert.ok("answer" in await copy);
  assert.ok(
    !(record.claim(key, "f") instanceof Promise),
    "with nothing running, a claim is immediate",
  );
});

Deno.test("AnsweredTasks forgets the oldest answers beyond its bounds", async () => {
  const record = new AnsweredTasks({ maxEntries: 2, maxBytes: 10_000 });
  for (const id of ["a", "b", "c"]) record.remember(id, "f", reply(id));
  assert.equal(record.size, 2);
  assert.ok("release" in await record.claim("a", "f"), "the oldest was forgotten");
  assert.ok("answer" in await record.claim("c", "f"));
  const small = new AnsweredTasks({ maxBytes: 2000 });
  small.remember("big", "f", reply("big", "x".repeat(5000)));
  assert.equal(small.size, 0, "an answer larger than the record is not kept");
});

Deno.test("AnsweredTasks counts an answer kept again as new, and stays small once full", async () => {
  const record = new AnsweredTasks({ maxEntries: 3, maxBytes: 1_000_000 });
  for (const id of ["a", "b", "c"]) record.remember(id, "f", reply(id));
  record.remember("a", "f", reply("a")); // now the newest
  record.remember("d", "f", reply("d"));
  assert.ok("release" in await record.claim("b", "f"), "b, the oldest, was forgotten");
  for (const id of ["a", "c", "d"]) assert.ok("answer" in await record.claim(id, "f"), id);
  // One id kept again and again never makes the record grow.
  for (let i = 0; i < 100_000; i++) record.remember("a", "f", reply("a"));
  assert.equal(record.size, 3);
  // Full, each answer forgets the oldest one.
  const full = new AnsweredTasks({ maxEntries: 1000 });
  for (let i = 0; i < 10_000; i++) full.remember(`t${i}`, "f", reply(`t${i}`));
  assert.equal(full.size, 1000);
  assert.ok("answer" in await full.claim("t9999", "f"), "the newest is kept");
  assert.ok("release" in await full.claim("t8999", "f"), "the older ones are forgotten");
  assert.ok("release" in await full.claim("t9998", "g"), "another request with a kept id runs");
});

Deno.test("fingerprintOf() is the same for copies of a publish and differs for a new one", () => {
  const message = (body: string, headers: Record<string, unknown> = {}) => ({
    body: new TextEncoder().encode(body),
    properties: { headers },
  });
  const sent = { "x-sent-at": 1 };
  assert.equal(fingerprintOf(message('{"a":1}', sent)), fingerprintOf(message('{"a":1}', sent)));
  assert.equal(
    fingerprintOf(message("x", sent)),
    fingerprintOf(message("x", { ...sent, "x-delivery-count": 3 })),
    "a redelivery's count does not matter",
  );
  assert.notEqual(fingerprintOf(message('{"a":1}')), fingerprintOf(message('{"a":2}')));
  assert.notEqual(fingerprintOf(message("ab")), fingerprintOf(message("abc")));
  assert.notEqual(
    fingerprintOf(message("x", sent)),
    fingerprintOf(message("x", { ...sent, "x-replayed-at": "now" })),
    "a replayed letter is a new request",
  );
  assert.notEqual(
    fingerprintOf(message("x", sent)),
    fingerprintOf(message("x", { ...sent, "x-attempt": 2 })),
  );
});

Deno.test("startWorker() answers a copy of an answered request from its record, without running it", async () => {
  const hub = new MemoryBroker();
  let runs = 0;
  const counted = defineFunction({
    name: "counted",
    queue: "queue_counted",
    async handler(payload, context) {
      runs++;
      await simulateWork(payload, context, 0);
      return { run: runs };
    },
  });
  const metrics = new WorkerMetrics();
  const worker = await startWorker(inProcessRunner(counted), hub.connect("counted"), {
    workerId: "counted@test",
    metrics,
  });
  const client = hub.connect("dispatcher");
  const replies: TaskReply[] = [];
  const replyTo = await client.openReplyQueue((message) => {
    const parsed = parseReply(message.body);
    assert.ok(parsed.ok);
    replies.push(parsed.value);
  });
  try {
    const request = encodeRequest("counted", { work_ms: 1 }, { taskId: "same", replyTo });
    // The same request twice, as a caller that lost its node sends it again.
    await client.publish("queue_counted", request);
    await client.publish("queue_counted", request);
    await waitFor(() => replies.length === 2, "two replies");
    assert.equal(runs, 1, "the handler ran once");
    assert.deepEqual(replies[0], replies[1], "the copy got the same answer");
    assert.equal(metrics.stats.answeredAgain, 1);
    assert.equal(metrics.stats.succeeded, 1);
    assert.equal((await client.inspectQueue("queue_counted"))?.messages, 0, "both settled");

    // A new request that reuses the task id (another deadline, so another body) runs.
    await client.publish(
      "queue_counted",
      encodeRequest("counted", { work_ms: 1 }, { taskId: "same", replyTo, deadline: 9e12 }),
    );
    await waitFor(() => replies.length === 3, "third reply");
    assert.equal(runs, 2);
    assert.match(
      metrics.render({ function: "counted", queue: "q" }, true),
      /worker_repeated_requests_total\{function="counted",queue="q"\} 1/,
    );
  } finally {
    await worker.stop(0);
    await hub.shutdown();
  }
});
