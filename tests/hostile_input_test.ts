/**
 * No single request can take a function down: real worker processes on the
 * RabbitMQ at `AMQP_URL`, sent what an attacker with the dispatcher's rights
 * would send. After each attack the worker must still serve a plain task.
 */

import assert from "node:assert/strict";
import type { Delivery } from "../core/broker/mod.ts";
import { connectAmqp } from "../core/broker/amqp/connect_amqp.ts";
import {
  deadLetterQueueOf,
  encodeRequest,
  headerBytes,
  MAX_ERROR_MESSAGE_CHARS,
  type Message,
  parseReply,
  retryQueueOf,
  type TaskReply,
} from "../core/contract/mod.ts";
import { AMQP_URL, NEEDS_RABBITMQ } from "./_infra.ts";
import { manage } from "./_management.ts";
import { deleteFunctionQueues, freePort, uniqueName, waitFor } from "./_helpers.ts";
import {
  exitWithin,
  runDeno,
  type RunningProcess,
  startWorkerProcess,
  WORKER_MAIN,
  workerPermissions,
} from "./_processes.ts";

const encoder = new TextEncoder();
const ESCAPE = "tests/fixtures/functions/escape.ts";

/** A caller on the broker, with its replies by task id. */
async function caller(queue: string, task = "task_a") {
  const broker = await connectAmqp(AMQP_URL, { connectionName: "hostile-input-test" });
  const replies = new Map<string, TaskReply>();
  const replyTo = await broker.openReplyQueue((message) => {
    const parsed = parseReply(message.body);
    assert.ok(parsed.ok, "every reply follows the contract");
    replies.set(parsed.value.task_id ?? "", parsed.value);
  });
  return {
    broker,
    replies,
    send(taskId: string, payload: Record<string, unknown> = {}, extra = {}) {
      return broker.publish(
        queue,
        encodeRequest(task, payload, { taskId, replyTo, ...extra }),
      );
    },
    sendRaw(taskId: string, body: Uint8Array | string, properties: Message["properties"] = {}) {
      return broker.publish(queue, {
        body: typeof body === "string" ? encoder.encode(body) : body,
        properties: {
          contentType: "application/json",
          correlationId: taskId,
          replyTo,
          ...properties,
        },
      });
    },
    async reply(taskId: string, timeoutMs = 15_000): Promise<TaskReply> {
      await waitFor(() => replies.has(taskId), `the reply to ${taskId}`, timeoutMs);
      return replies.get(taskId)!;
    },
    /** Takes the dead letters of the queue, waiting until there are `count`. */
    async letters(count: number, timeoutMs = 15_000): Promise<Delivery[]> {
      const dlq = deadLetterQueueOf(queue);
      await waitFor(
        async () => ((await broker.inspectQueue(dlq))?.messages ?? 0) >= count,
        `${count} dead letters in ${dlq}`,
        timeoutMs,
      );
      const letters: Delivery[] = [];
      for (let i = 0; i < count; i++) {
        const letter = (await broker.get(dlq))!;
        broker.ack(letter);
        letters.push(letter);
      }
      return letters;
    },
    async close() {
      await deleteFunctionQueues(broker, queue);
      await broker.close();
    },
  };
}

/** The peak resident memory of a process so far, in MiB (Linux VmHWM). */
async function peakRssMb(pid: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  return Number(status.match(/^VmHWM:\s+(\d+) kB/m)![1]) / 1024;
}

Deno.test({
  name:
    "huge, deeply nested and oversized bodies are refused before parsing, within a bounded memory",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const queue = uniqueName("hostile_memory");
    const worker = await startWorkerProcess("task_a", { AMQP_URL, QUEUE: queue });
    const c = await caller(queue);
    try {
      const baseline = await peakRssMb(worker.child.pid);
      // 16 MiB of nesting: parsed, it would take gigabytes.
      await c.sendRaw("nested-16m", "[".repeat(8 << 20) + "]".repeat(8 << 20));
      // Just under the limit, but nested far deeper than any payload needs.
      await c.sendRaw("nested-1m", "[".repeat(500_000) + "]".repeat(500_000));
      // Just under the limit and wide: a valid request, which is run.
      const wide = JSON.stringify({
        task: "task_a",
        payload: { work_ms: 0, list: Array.from({ length: 90_000 }, (_, i) => i) },
      });
      await c.sendRaw("wide-1m", wide);
      await c.send("after", { work_ms: 0 });
      assert.equal((await c.reply("nested-16m")).error?.type, "MessageTooLarge");
      assert.equal((await c.reply("nested-1m")).error?.type, "InvalidJson");
      assert.match((await c.reply("nested-1m")).error!.message, /nests deeper than 64 levels/);
      assert.equal((await c.reply("wide-1m")).status, "success");
      assert.equal((await c.reply("after")).result, "Hello from Task A", "still serving");
      const peak = await peakRssMb(worker.child.pid);
      console.log(
        `worker peak RSS: ${baseline.toFixed(1)} MiB at rest, ${peak.toFixed(1)} MiB after`,
      );
      // A 16 MiB body is held once or twice while it arrives; it is never parsed.
      assert.ok(peak - baseline < 100, `peak RSS grew by ${(peak - baseline).toFixed(1)} MiB`);
      const letters = await c.letters(2);
      const tooLarge = letters.find((l) =>
        l.properties.headers?.["x-dlq-error-type"] === "MessageTooLarge"
      )!;
      assert.equal(tooLarge.body.byteLength, 0, "an oversized body is not copied into the DLQ");
      assert.equal(tooLarge.properties.headers?.["x-dlq-body-bytes"], 16 << 20);
    } finally {
      assert.equal(await worker.stop(), 0, worker.lines.join("\n"));
      await c.close();
    }
  },
});

Deno.test({
  name: "what a request says is never echoed unbounded: a huge task name, huge headers",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const queue = uniqueName("hostile_echo");
    const worker = await startWorkerProcess("task_a", { AMQP_URL, QUEUE: queue });
    const c = await caller(queue);
    try {
      // Before, the worker copied the task name into the dead letter's
      // headers: past the frame size, the broker closed its connection.
      await c.sendRaw("long-task", JSON.stringify({ task: "t".repeat(900_000) }));
      // Large headers (amqplib sends at most 64 KiB) are refused, and dropped from the letter.
      await c.sendRaw("big-headers", JSON.stringify({ task: "task_a" }), {
        headers: { "x-pad": "h".repeat(60_000) },
      });
      await c.send("error-text", { work_ms: "w".repeat(200_000) });
      await c.send("after", { work_ms: 0 });
      const long = await c.reply("long-task");
      assert.equal(long.error?.type, "WrongFunction");
      assert.equal(long.task, null, "an invalid name is not echoed");
      assert.equal((await c.reply("big-headers")).error?.type, "HeadersTooLarge");
      const text = await c.reply("error-text");
      for (const reply of [long, text]) {
        assert.ok(reply.error!.message.length <= MAX_ERROR_MESSAGE_CHARS, reply.error!.message);
      }
      assert.equal((await c.reply("after")).status, "success", "still serving");
      for (const letter of await c.letters(3)) {
        const size = headerBytes(letter.properties.headers, 1 << 20);
        assert.ok(size < 24_000, `dead-letter headers of ${size} bytes`);
      }
      assert.ok(
        !worker.lines.some((line) => line.length > 4000),
        "no log line carries the request's bulk",
      );
    } finally {
      assert.equal(await worker.stop(), 0, worker.lines.join("\n"));
      await c.close();
    }
  },
});

Deno.test({
  name: "retry settings RabbitMQ would refuse are an InvalidRequest, and the worker goes on",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const queue = uniqueName("hostile_retry");
    const worker = await startWorkerProcess("task_a", { AMQP_URL, QUEUE: queue });
    const c = await caller(queue);
    try {
      const bad: Record<string, number>[] = [
        { base_delay_ms: 2 ** 40 },
        { max_delay_ms: 2 ** 33, base_delay_ms: 2 ** 32 },
        { max_retries: 1e6 },
        { factor: 1e9 },
      ];
      for (const [i, retry] of bad.entries()) {
        await c.send(`bad-${i}`, { fail_attempts: 1 }, { retry });
      }
      await c.send("after", { work_ms: 0 });
      for (const i of bad.keys()) {
        assert.equal((await c.reply(`bad-${i}`)).error?.type, "InvalidRequest");
      }
      assert.equal((await c.reply("after")).status, "success");
      const letters = await c.letters(bad.length);
      assert.ok(letters.every((l) => l.properties.headers?.["x-dlq-reason"] === "rejected"));
    } finally {
      assert.equal(await worker.stop(), 0, worker.lines.join("\n"));
      await c.close();
    }
  },
});

Deno.test({
  name:
    "a settle the broker refuses never wedges a worker: the task goes back, ends in the DLQ, and others are served",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const queue = uniqueName("hostile_settle");
    const metricsPort = freePort();
    const worker = await startWorkerProcess("task_a", {
      AMQP_URL,
      QUEUE: queue,
      DELIVERY_LIMIT: "2",
      METRICS_PORT: String(metricsPort),
    });
    const c = await caller(queue);
    // The retry queues the failing task's backoff rounds to (300 ms ± 20%:
    // 200 or 300) are replaced, once the worker declared them, by queues with
    // other arguments: its declaration before each retry fails.
    for (const ms of [200, 300]) {
      await c.broker.deleteQueue(retryQueueOf(queue, ms));
      await c.broker.declareQueue(retryQueueOf(queue, ms), { type: "classic", durable: false });
    }
    try {
      await c.send("stuck", { fail_attempts: 5 }, {
        retry: { max_retries: 3, base_delay_ms: 300, max_delay_ms: 300 },
      });
      await waitFor(
        () => worker.lines.some((l) => l.includes("Could not settle a task")),
        "a failed settle",
      );
      await c.send("served", { work_ms: 0 });
      assert.equal((await c.reply("served")).status, "success", "others are served meanwhile");
      const health = await fetch(`http://127.0.0.1:${metricsPort}/healthz`);
      assert.equal(health.status, 200, await health.text());
      const [letter] = await c.letters(1, 30_000);
      assert.equal(letter.properties.headers?.["x-dlq-reason"], "delivery_limit");
      assert.equal(letter.properties.headers?.["x-dlq-deliveries"], 2);
      assert.equal((await c.reply("stuck")).error?.type, "DeliveryLimit");
      // Returned with basic.reject, which every RabbitMQ version counts.
      const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      assert.match(metrics, /worker_deliveries_returned_total\{[^}]*how="settle_refused"\} 2\n/);
    } finally {
      assert.equal(await worker.stop(), 0, worker.lines.join("\n"));
      await c.close();
    }
  },
});

Deno.test({
  name:
    "a request that kills its worker every time ends in the DLQ after DELIVERY_LIMIT deliveries, and the restarted worker serves on",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const queue = uniqueName("hostile_crash");
    const c = await caller(queue, "escape");
    const env = { AMQP_URL, QUEUE: queue, DELIVERY_LIMIT: "3" };
    // A small heap, so that the fixture runs out of memory at once.
    const heap = ["--v8-flags=--max-old-space-size=48"];
    let worker: RunningProcess = await startWorkerProcess(ESCAPE, env, heap);
    let crashes = 0;
    try {
      await c.send("poison", { attempt: "oom" });
      // The supervisor's job (Docker's restart policy, here this loop):
      // start the worker again each time it dies.
      while (crashes < 3) {
        // A fixture that stops crashing would hang here: fail, naming the wait.
        const code = await exitWithin(
          worker,
          60_000,
          `crash ${crashes + 1} of 3 of the OOM fixture`,
        );
        assert.notEqual(code.code, 0, "the process died");
        crashes++;
        worker = await startWorkerProcess(ESCAPE, env, heap);
      }
      const [letter] = await c.letters(1, 30_000);
      assert.equal(letter.properties.headers?.["x-dlq-reason"], "delivery_limit");
      assert.equal(letter.properties.headers?.["x-dlq-deliveries"], 3);
      assert.equal(letter.properties.correlationId, "poison");
      await c.send("after", {});
      assert.equal((await c.reply("after")).result, "served");
      assert.equal(crashes, 3, "delivered three times, each time fatal, then dead-lettered");
      console.log(`deliveries before dead-lettering: ${crashes}`);
    } finally {
      assert.equal(await worker.stop(), 0, worker.lines.join("\n"));
      await c.close();
    }
  },
});

Deno.test({
  name: "an expired request is never run, and a handler that never yields is aborted at timeoutMs",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const queue = uniqueName("hostile_time");
    // One task at a time: "after" waits in the queue, not in the sandbox
    // behind the spin (a task sent in the same batch as a handler that never
    // yields shares its fate: docs/reliability.md).
    const worker = await startWorkerProcess(ESCAPE, {
      AMQP_URL,
      QUEUE: queue,
      LOG_LEVEL: "debug",
      CONCURRENCY: "1",
    });
    const c = await caller(queue, "escape");
    try {
      await c.send("late", {}, { deadline: Date.now() - 1 });
      const late = await c.reply("late");
      assert.equal(late.error?.type, "DeadlineExceeded");
      assert.ok(
        !worker.lines.some((l) => l.includes('"msg":"Task started"') && l.includes("late")),
        "it never started",
      );
      const sent = performance.now();
      await c.send("spin", { attempt: "spin", target: "600000" });
      await c.send("after", {});
      const spin = await c.reply("spin");
      const abortedAfter = performance.now() - sent;
      assert.equal(spin.error?.type, "TaskTimeout");
      // The fixture's timeoutMs is 2 s; its handler never yields.
      assert.ok(abortedAfter < 6000, `aborted after ${abortedAfter.toFixed(0)} ms`);
      console.log(`hung handler aborted after ${abortedAfter.toFixed(0)} ms (timeoutMs 2000)`);
      const after = await c.reply("after");
      assert.equal(after.result, "served", `the next task runs: ${JSON.stringify(after)}`);
      const letters = await c.letters(2);
      assert.deepEqual(
        letters.map((l) => l.properties.headers?.["x-dlq-reason"]).sort(),
        ["exhausted", "expired"],
      );
    } finally {
      assert.equal(await worker.stop(), 0, worker.lines.join("\n"));
      await c.close();
    }
  },
});

Deno.test({
  name: "a request nobody waits for any more is dead-lettered by the broker itself (expiration)",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const queue = uniqueName("hostile_expiry");
    // The worker declares the queue (with its dead-letter target), then stops.
    const worker = await startWorkerProcess("task_a", { AMQP_URL, QUEUE: queue });
    assert.equal(await worker.stop(), 0);
    const c = await caller(queue);
    try {
      await c.send("unwaited", {}, { deadline: Date.now() + 200 });
      // Nothing consumes: RabbitMQ drops the request at its expiration, into the DLQ.
      await waitFor(
        async () => {
          await c.broker.inspectQueue(queue);
          return ((await c.broker.inspectQueue(deadLetterQueueOf(queue)))?.messages ?? 0) === 1;
        },
        "the broker dead-lettered it",
        15_000,
      );
      const [letter] = await c.letters(1);
      assert.equal(letter.properties.headers?.["x-first-death-reason"], "expired");
      assert.equal(letter.properties.correlationId, "unwaited");
    } finally {
      await c.close();
    }
  },
});

Deno.test({
  name: "a worker that finds its queue of the other type stops with a message naming both",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const queue = uniqueName("hostile_type");
    const c = await caller(queue);
    await c.broker.declareQueue(queue, { type: "classic" });
    try {
      const run = await runDeno(["run", ...workerPermissions(), WORKER_MAIN, "task_a"], {
        AMQP_URL,
        QUEUE: queue,
        METRICS_PORT: "0",
      });
      assert.equal(run.code, 1, run.stdout + run.stderr);
      assert.match(
        run.stdout,
        new RegExp(
          `Cannot consume queue '${queue}' as it exists as a classic queue and this worker uses quorum queues \\(QUEUE_TYPE=quorum\\): set QUEUE_TYPE=classic to keep using it, or migrate it`,
        ),
      );
      assert.ok(!run.stdout.includes('"stack"'), "no stack trace");
      assert.ok(!/\n\s+at /.test(run.stderr), "no stack trace");
    } finally {
      await c.close();
    }
  },
});

Deno.test({
  name: "a worker whose queue has another delivery limit names that limit, not another argument",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const queue = uniqueName("hostile_limit");
    const c = await caller(queue);
    // As a worker with DELIVERY_LIMIT=5 declared them (the work queue's limit is one more).
    await c.broker.declareQueue(`${queue}.dlq`, { type: "quorum", deliveryLimit: 2 ** 31 });
    await c.broker.declareQueue(queue, {
      type: "quorum",
      deadLetterQueue: `${queue}.dlq`,
      deliveryLimit: 6,
    });
    try {
      const run = await runDeno(["run", ...workerPermissions(), WORKER_MAIN, "task_a"], {
        AMQP_URL,
        QUEUE: queue,
        METRICS_PORT: "0",
        DELIVERY_LIMIT: "9",
      });
      assert.equal(run.code, 1, run.stdout + run.stderr);
      assert.match(
        run.stdout,
        /as it was declared with other arguments \(x-delivery-limit: \D*5\D*, where this worker declares \D*9\D*\)/,
      );
    } finally {
      await c.close();
    }
  },
});

Deno.test({
  name:
    "a dead letter the broker refuses keeps its request unacknowledged: it comes back until the dead-letter queue takes it",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const queue = uniqueName("hostile_dlq_full");
    const policy = `${queue}_full`;
    // Classic queues: they count no deliveries, so only the broker taking the letter ends this.
    const worker = await startWorkerProcess("task_a", {
      AMQP_URL,
      QUEUE: queue,
      QUEUE_TYPE: "classic",
    });
    const c = await caller(queue);
    try {
      const full = await manage("PUT", `policies/%2F/${policy}`, {
        pattern: `^${queue}\\.dlq$`,
        definition: { "max-length": 0, overflow: "reject-publish" },
        "apply-to": "queues",
        priority: 10,
      });
      assert.ok(full.ok, `policy: ${full.status}`);
      await c.sendRaw("refused", "{not json");
      await waitFor(
        () => worker.lines.filter((l) => l.includes("Could not settle a task")).length >= 2,
        "its dead letter refused, the request back, and refused again",
      );
      // The reply follows the dead letter: nothing was answered, nothing lost.
      assert.equal(c.replies.has("refused"), false);
      assert.equal((await manage("DELETE", `policies/%2F/${policy}`)).ok, true);
      assert.equal((await c.reply("refused")).error?.type, "InvalidJson");
      const [letter] = await c.letters(1);
      assert.equal(letter.properties.headers?.["x-dlq-reason"], "rejected");
      assert.equal(new TextDecoder().decode(letter.body), "{not json");
    } finally {
      await manage("DELETE", `policies/%2F/${policy}`);
      assert.equal(await worker.stop(), 0, worker.lines.join("\n"));
      await c.close();
    }
  },
});
