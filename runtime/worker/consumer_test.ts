import assert from "node:assert/strict";
import type { Broker, Delivery } from "../../core/broker/broker.ts";
import { MemoryBroker } from "../../core/broker/mod.ts";
import {
  deadLetterQueueOf,
  encodeRequest,
  type Message,
  parseProgress,
  parseReply,
  PROGRESS_MESSAGE_TYPE,
  type TaskProgress,
  type TaskReply,
} from "../../core/contract/mod.ts";
import { defineFunction, type FunctionDefinition, NonRetryableError } from "../define_function.ts";
import { createLogger } from "../../core/log.ts";
import { simulateWork } from "../simulate_work.ts";
import { inProcessRunner } from "../handler_runner.ts";
import { startWorker, type WorkerOptions } from "./consumer.ts";
import { waitFor } from "../../tests/_helpers.ts";

const encoder = new TextEncoder();

const echo = defineFunction({
  name: "echo",
  queue: "queue_echo",
  retry: { baseDelayMs: 5, factor: 2, maxDelayMs: 50, maxRetries: 3 },
  async handler(payload, context) {
    await simulateWork(payload, context, 0);
    if (payload.permanent) throw new NonRetryableError("permanent failure");
    if (payload.denied) throw new Deno.errors.NotCapable('Requires read access to "/etc/passwd"');
    if (payload.bigint) return 1n;
    return { echoed: payload, attempt: context.attempt };
  },
});

async function setup(definition: FunctionDefinition = echo, options: Partial<WorkerOptions> = {}) {
  const hub = new MemoryBroker();
  const workerBroker = hub.connect(definition.name);
  const client = hub.connect("dispatcher");
  const replies: TaskReply[] = [];
  const progress: TaskProgress[] = [];
  const replyTo = await client.openReplyQueue((message) => {
    if (message.properties.type === PROGRESS_MESSAGE_TYPE) {
      const parsed = parseProgress(message.body);
      assert.ok(parsed.ok);
      progress.push(parsed.value);
      return;
    }
    const parsed = parseReply(message.body);
    assert.ok(parsed.ok, "every reply follows the contract");
    replies.push(parsed.value);
  });
  const worker = await startWorker(inProcessRunner(definition), workerBroker, {
    workerId: "echo@test",
    ...options,
  });
  return {
    hub,
    client,
    worker,
    workerBroker,
    replies,
    progress,
    replyTo,
    queue: options.queue ?? definition.queue,
    send(
      payload: Record<string, unknown>,
      extra: { taskId?: string; progress?: boolean; retry?: Record<string, number> } = {},
    ) {
      const taskId = extra.taskId ?? crypto.randomUUID();
      return client.publish(
        options.queue ?? definition.queue,
        encodeRequest(definition.name, payload, { taskId, replyTo, ...extra }),
      ).then(() => taskId);
    },
    sendRaw(body: string | Uint8Array, properties: Message["properties"]) {
      return client.publish(options.queue ?? definition.queue, {
        body: typeof body === "string" ? encoder.encode(body) : body,
        properties: { replyTo, ...properties },
      });
    },
    async depth(queue: string) {
      return (await client.inspectQueue(queue))?.messages ?? -1;
    },
    async close() {
      await worker.stop(0);
      await hub.shutdown();
    },
  };
}

Deno.test("startWorker() replies with the result and every contract field, then acks", async () => {
  const t = await setup();
  try {
    const before = Date.now();
    const taskId = await t.send({ work_ms: 20, hello: "world" });
    await waitFor(() => t.replies.length === 1, "reply");
    const [reply] = t.replies;
    assert.equal(reply.task_id, taskId);
    assert.equal(reply.task, "echo");
    assert.equal(reply.status, "success");
    assert.deepEqual(reply.result, { echoed: { work_ms: 20, hello: "world" }, attempt: 1 });
    assert.equal(reply.error, null);
    assert.equal(reply.worker, "echo@test");
    assert.equal(reply.queue, "queue_echo");
    assert.equal(reply.attempts, 1);
    assert.ok(reply.duration_ms >= 19, `duration ${reply.duration_ms} covers the work`);
    assert.ok(Date.parse(reply.started_at) >= before - 1);
    assert.ok(Date.parse(reply.finished_at) >= Date.parse(reply.started_at));
    await waitFor(() => t.worker.stats.inFlight === 0, "settled");
    assert.equal(t.worker.stats.succeeded, 1);
    assert.equal(await t.depth("queue_echo"), 0);
  } finally {
    await t.close();
  }
});

Deno.test("startWorker() refuses bad requests with an error reply, dead-letters them and keeps serving", async () => {
  const t = await setup();
  try {
    const json = { contentType: "application/json" };
    const bad: [string | Uint8Array, Message["properties"], string][] = [
      ["{not json", json, "InvalidJson"],
      ["", json, "InvalidJson"],
      ['{"task":"other_fn"}', json, "WrongFunction"],
      ['{"task":"echo","payload":[1]}', json, "InvalidRequest"],
      ['{"task":"echo"}', { contentType: "text/plain" }, "InvalidContentType"],
      [new Uint8Array(1024 * 1024 + 1).fill(32), json, "MessageTooLarge"],
    ];
    for (const [body, properties, _] of bad) {
      await t.sendRaw(body, { ...properties, correlationId: crypto.randomUUID() });
    }
    await t.send({ ok: true });
    await waitFor(() => t.replies.length === bad.length + 1, "all replies");
    const errors = t.replies.filter((r) => r.status === "error").map((r) => r.error!.type);
    assert.deepEqual(errors.sort(), bad.map(([, , type]) => type).sort());
    for (const reply of t.replies.filter((r) => r.status === "error")) {
      assert.ok(reply.error!.message.length > 20, "says what was wrong");
    }
    const wrong = t.replies.find((r) => r.error?.type === "WrongFunction")!;
    assert.equal(wrong.task, "other_fn");
    assert.match(wrong.error!.message, /other_fn.*echo/);
    assert.ok(t.replies.some((r) => r.status === "success"), "still serving");
    const dlq = deadLetterQueueOf("queue_echo");
    await waitFor(async () => (await t.depth(dlq)) === bad.length, "dead letters");
    const letter = (await t.client.get(dlq))!;
    assert.equal(letter.properties.headers?.["x-dlq-reason"], "rejected");
    assert.equal(letter.properties.headers?.["x-dlq-error-type"], "InvalidJson");
    assert.equal(new TextDecoder().decode(letter.body), "{not json", "keeps the original body");
    assert.equal(t.worker.stats.rejected, bad.length);
  } finally {
    await t.close();
  }
});

Deno.test("startWorker() dead-letters a bad request without reply_to instead of dropping it", async () => {
  const t = await setup();
  try {
    await t.client.publish(t.queue, {
      body: encoder.encode("garbage"),
      properties: { contentType: "application/json" },
    });
    const dlq = deadLetterQueueOf(t.queue);
    await waitFor(async () => (await t.depth(dlq)) === 1, "dead letter");
    assert.equal(t.replies.length, 0);
    assert.equal(await t.depth(t.queue), 0);
  } finally {
    await t.close();
  }
});

Deno.test("startWorker() retries a failure through a delay queue and reports attempts", async () => {
  const t = await setup();
  try {
    await t.send({ fail_attempts: 2 }, { progress: true });
    await waitFor(() => t.replies.length === 1, "reply after retries");
    const [reply] = t.replies;
    assert.equal(reply.status, "success");
    assert.equal(reply.attempts, 3);
    assert.deepEqual((reply.result as { attempt: number }).attempt, 3);
    assert.equal(t.worker.stats.retried, 2);
    const events = t.progress.map((p) => `${p.event}:${p.attempt}`);
    assert.deepEqual(events, ["started:1", "retry:1", "started:2", "retry:2", "started:3"]);
    const retry = t.progress.find((p) => p.event === "retry")!;
    assert.equal(retry.error?.type, "SimulatedFailure");
    assert.equal(retry.max_retries, 3);
    // First retry: nominal 5 ms, jitter ±20%.
    assert.ok(retry.delay_ms! >= 4 && retry.delay_ms! <= 6, `delay ${retry.delay_ms}`);
  } finally {
    await t.close();
  }
});

Deno.test("startWorker() sends no progress events unless the request asks", async () => {
  const t = await setup();
  try {
    await t.send({ fail_attempts: 1 });
    await waitFor(() => t.replies.length === 1, "reply");
    assert.equal(t.progress.length, 0);
    assert.equal(t.replies[0].attempts, 2);
  } finally {
    await t.close();
  }
});

Deno.test("startWorker() dead-letters and reports a task whose retries are exhausted", async () => {
  const t = await setup();
  try {
    await t.send({ fail_attempts: 10 }, { retry: { max_retries: 1, base_delay_ms: 1 } });
    await waitFor(() => t.replies.length === 1, "reply");
    const [reply] = t.replies;
    assert.equal(reply.status, "error");
    assert.equal(reply.attempts, 2);
    assert.equal(reply.error?.type, "SimulatedFailure");
    const dlq = deadLetterQueueOf(t.queue);
    await waitFor(async () => (await t.depth(dlq)) === 1, "dead letter");
    const letter = (await t.client.get(dlq))!;
    assert.equal(letter.properties.headers?.["x-dlq-reason"], "exhausted");
    assert.equal(letter.properties.headers?.["x-dlq-attempts"], 2);
    assert.equal(t.worker.stats.failed, 1);
  } finally {
    await t.close();
  }
});

Deno.test("startWorker() fails a NonRetryableError at once", async () => {
  const t = await setup();
  try {
    await t.send({ permanent: true });
    await waitFor(() => t.replies.length === 1, "reply");
    assert.equal(t.replies[0].attempts, 1);
    assert.equal(t.replies[0].error?.type, "NonRetryableError");
    const letter = await (async () => {
      await waitFor(async () => (await t.depth(deadLetterQueueOf(t.queue))) === 1, "dead letter");
      return (await t.client.get(deadLetterQueueOf(t.queue)))!;
    })();
    assert.equal(letter.properties.headers?.["x-dlq-reason"], "non_retryable");
  } finally {
    await t.close();
  }
});

Deno.test("startWorker() fails a denied permission (NotCapable) at once and keeps serving", async () => {
  const t = await setup();
  try {
    await t.send({ denied: true });
    await waitFor(() => t.replies.length === 1, "reply");
    assert.equal(t.replies[0].status, "error");
    assert.equal(t.replies[0].attempts, 1, "a retry cannot grant a permission");
    assert.deepEqual(t.replies[0].error, {
      type: "NotCapable",
      message: 'Requires read access to "/etc/passwd"',
    });
    await waitFor(async () => (await t.depth(deadLetterQueueOf(t.queue))) === 1, "dead letter");
    const letter = (await t.client.get(deadLetterQueueOf(t.queue)))!;
    assert.equal(letter.properties.headers?.["x-dlq-reason"], "non_retryable");
    await t.send({});
    await waitFor(() => t.replies.length === 2, "second reply");
    assert.equal(t.replies[1].status, "success");
  } finally {
    await t.close();
  }
});

Deno.test("startWorker() reports a result that is not JSON as InvalidResult, without retrying", async () => {
  const t = await setup();
  try {
    await t.send({ bigint: true });
    await waitFor(() => t.replies.length === 1, "reply");
    assert.equal(t.replies[0].error?.type, "InvalidResult");
    assert.equal(t.replies[0].attempts, 1);
  } finally {
    await t.close();
  }
});

Deno.test("startWorker() payload errors are InvalidPayload and not retried", async () => {
  const t = await setup();
  try {
    await t.send({ work_ms: "soon" });
    await waitFor(() => t.replies.length === 1, "reply");
    assert.equal(t.replies[0].error?.type, "InvalidPayload");
    assert.match(t.replies[0].error!.message, /payload\.work_ms/);
    assert.equal(t.replies[0].attempts, 1);
  } finally {
    await t.close();
  }
});

Deno.test("startWorker() acknowledges only after the reply is published", async () => {
  const hub = new MemoryBroker();
  const inner = hub.connect("echo");
  const log: string[] = [];
  let release!: () => void;
  const held = new Promise<void>((resolve) => release = resolve);
  const gated: Broker = Object.assign(Object.create(inner), {
    declareQueue: inner.declareQueue.bind(inner),
    declareExchange: inner.declareExchange.bind(inner),
    bindQueue: inner.bindQueue.bind(inner),
    consume: inner.consume.bind(inner),
    async publish(queue: string, message: Message) {
      log.push(`publish ${message.properties.type ?? queue}`);
      if (message.properties.type === "task.result") await held;
      await inner.publish(queue, message);
      log.push(`published ${message.properties.type ?? queue}`);
    },
    ack(delivery: Delivery) {
      log.push("ack");
      inner.ack(delivery);
    },
  });
  const client = hub.connect("dispatcher");
  const replies: Message[] = [];
  const replyTo = await client.openReplyQueue((m) => replies.push(m));
  const worker = await startWorker(inProcessRunner(echo), gated, { workerId: "w" });
  try {
    await client.publish(echo.queue, encodeRequest("echo", {}, { taskId: "t1", replyTo }));
    await waitFor(() => log.includes("publish task.result"), "reply started");
    release();
    await waitFor(() => log.includes("ack"), "ack");
    // The log is in the order things happened: an ack before the reply was
    // published, whenever it came, would stand before "published".
    assert.deepEqual(log, ["publish task.result", "published task.result", "ack"]);
    assert.equal(replies.length, 1);
  } finally {
    await worker.stop(0);
    await hub.shutdown();
  }
});

Deno.test("startWorker() runs at most `concurrency` handlers at once", async () => {
  let running = 0;
  let peak = 0;
  const slow = defineFunction({
    name: "slow",
    queue: "queue_slow",
    async handler() {
      running++;
      peak = Math.max(peak, running);
      await new Promise((resolve) => setTimeout(resolve, 15));
      running--;
      return "done";
    },
  });
  for (const concurrency of [1, 3]) {
    peak = 0;
    const t = await setup(slow, { concurrency });
    try {
      for (let i = 0; i < 6; i++) await t.send({});
      await waitFor(() => t.replies.length === 6, "six replies");
      assert.equal(peak, concurrency);
    } finally {
      await t.close();
    }
  }
});

Deno.test("RunningWorker.stop() lets in-flight work finish within the grace period", async () => {
  const t = await setup();
  try {
    await t.send({ work_ms: 40 });
    await waitFor(() => t.worker.stats.inFlight === 1, "task started");
    await t.send({ work_ms: 40 });
    await t.worker.stop(1000);
    assert.equal(t.replies.length, 1, "the running task finished and replied");
    assert.equal(t.replies[0].status, "success");
    assert.equal(await t.depth(t.queue), 1, "the task not started went back to the queue");
  } finally {
    await t.hub.shutdown();
  }
});

Deno.test("RunningWorker.stop() hands work that outlasts the grace period back as a copy, which no delivery limit counts", async () => {
  const t = await setup();
  try {
    const taskId = await t.send({ work_ms: 5000 });
    await waitFor(() => t.worker.stats.inFlight === 1, "task started");
    const started = Date.now();
    await t.worker.stop(30);
    // Half the task's 5 s: what waiting for the work, not the 30 ms grace, would exceed.
    assert.ok(Date.now() - started < 2500, "stop() waited only for the grace period");
    assert.equal(await t.depth(t.queue), 1, "handed back before stop() resolved");
    assert.equal(t.replies.length, 0, "no reply for unfinished work");
    assert.equal(t.worker.stats.handedBack, 1);
    const again = (await t.client.get(t.queue))!;
    // A copy, published by the worker's user, keeping who sent it: a
    // basic.nack would count as a delivery before RabbitMQ 4.3.
    assert.equal(again.redelivered, false);
    assert.equal(again.properties.headers?.["x-delivery-count"], undefined);
    assert.equal(again.properties.userId, "echo");
    assert.equal(again.properties.headers?.["x-sender"], "dispatcher");
    assert.equal(again.properties.correlationId, taskId);
    assert.deepEqual(JSON.parse(new TextDecoder().decode(again.body)).payload, { work_ms: 5000 });
  } finally {
    await t.hub.shutdown();
  }
});

Deno.test("startWorker() logs each task's end as JSON with every field that applies", async () => {
  const lines: string[] = [];
  const log = createLogger({ level: "debug", write: (line) => lines.push(line) });
  const t = await setup(echo, { log, workerId: "echo@log" });
  let ok = "";
  let failing = "";
  try {
    ok = await t.send({ work_ms: 5 });
    failing = await t.send({ fail_attempts: 10 }, {
      retry: { max_retries: 1, base_delay_ms: 1 },
    });
    await t.sendRaw("{oops", { contentType: "application/json", correlationId: "bad" });
    await waitFor(() => t.replies.length === 3, "three replies");
  } finally {
    await t.close();
  }
  const entries = lines.map((line) => JSON.parse(line));
  const common = { function: "echo", queue: "queue_echo", worker: "echo@log" };
  for (const entry of entries) {
    assert.ok(typeof entry.ts === "string" && !Number.isNaN(Date.parse(entry.ts)), entry.ts);
    assert.ok(["debug", "info", "warn", "error"].includes(entry.level));
    assert.equal(typeof entry.msg, "string");
    for (const [key, value] of Object.entries(common)) assert.equal(entry[key], value, key);
  }
  const find = (msg: string, taskId: string) =>
    entries.filter((e) => e.msg === msg && e.task_id === taskId);
  const [success] = find("Task succeeded", ok);
  assert.equal(success.level, "info");
  assert.equal(success.attempt, 1);
  assert.equal(success.status, "success");
  assert.ok(success.duration_ms >= 4, `duration ${success.duration_ms}`);
  assert.equal(find("Task started", ok).length, 1, "a debug line when a task starts");

  const [retry] = find("Task failed; retrying", failing);
  assert.equal(retry.attempt, 1);
  assert.equal(retry.error_type, "SimulatedFailure");
  assert.match(retry.error, /Failing attempt 1/);
  assert.equal(typeof retry.duration_ms, "number");
  const [failed] = find("Task failed", failing);
  assert.equal(failed.attempt, 2);
  assert.equal(failed.status, "error");
  assert.equal(failed.reason, "exhausted");
  assert.equal(typeof failed.duration_ms, "number");

  const [rejected] = find("Rejected a request that breaks the contract", "bad");
  assert.equal(rejected.status, "rejected");
  assert.equal(rejected.error_type, "InvalidJson");
  assert.equal(rejected.attempt, 1);
  assert.equal(typeof rejected.duration_ms, "number");
});
