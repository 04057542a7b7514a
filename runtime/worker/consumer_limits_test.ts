/**
 * The runtime's bounds, in process on the in-memory broker: senders,
 * delivery limits, deadlines, time limits, hostile sizes, failed settles.
 */

import assert from "node:assert/strict";
import type { Broker, Delivery, QueueOptions } from "../../core/broker/broker.ts";
import { MemoryBroker } from "../../core/broker/mod.ts";
import {
  deadLetterQueueOf,
  encodeRequest,
  headerBytes,
  MAX_ERROR_MESSAGE_CHARS,
  MAX_HEADER_BYTES,
  MAX_RUNTIME_HEADER_BYTES,
  type Message,
  parseReply,
  type TaskReply,
} from "../../core/contract/mod.ts";
import { defineFunction } from "../define_function.ts";
import { createLogger } from "../../core/log.ts";
import { runWorker } from "../process/main.ts";
import { inProcessRunner } from "../handler_runner.ts";
import { type RunningWorker, startWorker, type WorkerOptions } from "./consumer.ts";
import { waitFor } from "../../tests/_helpers.ts";

const encoder = new TextEncoder();

let started = 0;
const probe = defineFunction({
  name: "probe",
  queue: "queue_probe",
  timeoutMs: 200,
  retry: { maxRetries: 1, baseDelayMs: 1, maxDelayMs: 5 },
  async handler(payload, context) {
    started++;
    if (payload.hang) await new Promise(() => {});
    if (payload.wait) {
      await new Promise((resolve, reject) => {
        const timer = setTimeout(resolve, payload.wait as number);
        context.signal.addEventListener("abort", () => {
          clearTimeout(timer);
          reject(context.signal.reason);
        });
      });
    }
    if (payload.fail) throw new Error("x".repeat(100_000));
    if (payload.big) return "y".repeat(payload.big as number);
    return "ok";
  },
});

/** `broker` with some of its methods replaced. */
function wrap(broker: Broker, overrides: Partial<Broker>): Broker {
  const methods = Object.getOwnPropertyNames(Object.getPrototypeOf(broker))
    .filter((name) => name !== "constructor")
    .map((name) => [name, (broker as unknown as Record<string, () => unknown>)[name].bind(broker)]);
  return {
    ...Object.fromEntries(methods),
    user: broker.user,
    closed: broker.closed,
    ...overrides,
  } as Broker;
}

async function setup(options: Partial<WorkerOptions> = {}, user = "dispatcher") {
  started = 0;
  const hub = new MemoryBroker();
  const client = hub.connect(user);
  const replies: TaskReply[] = [];
  const replyTo = await client.openReplyQueue((message) => {
    const parsed = parseReply(message.body);
    assert.ok(parsed.ok, "every reply follows the contract");
    replies.push(parsed.value);
  });
  const lines: string[] = [];
  const worker = await startWorker(inProcessRunner(probe), hub.connect("probe"), {
    workerId: "probe@test",
    log: createLogger({ write: (line) => lines.push(line) }),
    ...options,
  });
  const dlq = deadLetterQueueOf(probe.queue);
  return {
    hub,
    client,
    worker,
    replies,
    lines,
    send(
      payload: Record<string, unknown>,
      extra: Partial<Parameters<typeof encodeRequest>[2]> = {},
    ) {
      return client.publish(
        probe.queue,
        encodeRequest("probe", payload, { taskId: crypto.randomUUID(), replyTo, ...extra }),
      );
    },
    sendRaw(body: string | Uint8Array, properties: Message["properties"] = {}) {
      return client.publish(probe.queue, {
        body: typeof body === "string" ? encoder.encode(body) : body,
        properties: { contentType: "application/json", replyTo, ...properties },
      });
    },
    async letters(count: number): Promise<Delivery[]> {
      await waitFor(
        async () => ((await client.inspectQueue(dlq))?.messages ?? 0) >= count,
        `${count} dead letters`,
      );
      const letters = [];
      for (let i = 0; i < count; i++) letters.push((await client.get(dlq))!);
      return letters;
    },
    async close() {
      await worker.stop(0);
      await hub.shutdown();
    },
  };
}

Deno.test("startWorker() runs nothing for a sender it does not accept, and dead-letters it silently", async () => {
  const t = await setup({}, "task_other");
  try {
    await t.send({});
    const [letter] = await t.letters(1);
    assert.equal(letter.properties.headers?.["x-dlq-reason"], "unauthenticated");
    assert.equal(letter.properties.headers?.["x-dlq-sender"], "task_other");
    assert.match(
      String(letter.properties.headers?.["x-dlq-error-message"]),
      /from broker user 'task_other'.*accepts requests from dispatcher, admin, operator, gateway only/,
    );
    assert.equal(started, 0, "the handler never ran");
    assert.equal(t.replies.length, 0, "an unauthenticated sender learns nothing");
    assert.equal(t.worker.stats.unauthenticated, 1);
  } finally {
    await t.close();
  }
});

Deno.test("startWorker() accepts its own user (retries) and the senders it is told to", async () => {
  const t = await setup({ allowedSenders: ["task_other"] }, "task_other");
  try {
    await t.send({});
    await waitFor(() => t.replies.length === 1, "reply");
    assert.equal(t.replies[0].status, "success");
  } finally {
    await t.close();
  }
});

Deno.test("startWorker() dead-letters a request delivered DELIVERY_LIMIT times that never settled", async () => {
  const hub = new MemoryBroker();
  const client = hub.connect("dispatcher");
  const controller = new AbortController();
  let connection: Broker | undefined;
  started = 0;
  const running = runWorker(inProcessRunner(probe), {
    workerId: "w",
    signal: controller.signal,
    deliveryLimit: 3,
    connect: () => Promise.resolve(connection = hub.connect("probe")),
  });
  try {
    await waitFor(
      async () => (await client.inspectQueue(probe.queue))?.consumers === 1,
      "consuming",
    );
    await client.publish(probe.queue, encodeRequest("probe", { hang: true }, { taskId: "poison" }));
    for (let crash = 1; crash <= 3; crash++) {
      await waitFor(() => started === crash, `delivery ${crash}`);
      // The process dies mid-task: its connection goes, unsettled.
      await connection!.close();
    }
    const dlq = deadLetterQueueOf(probe.queue);
    await waitFor(async () => (await client.inspectQueue(dlq))?.messages === 1, "dead letter");
    const letter = (await client.get(dlq))!;
    assert.equal(letter.properties.headers?.["x-dlq-reason"], "delivery_limit");
    assert.equal(letter.properties.headers?.["x-dlq-deliveries"], 3);
    assert.equal(started, 3, "the handler ran once per delivery, never a fourth time");
    assert.equal((await client.inspectQueue(probe.queue))?.messages, 0);
  } finally {
    controller.abort();
    await running;
    await hub.shutdown();
  }
});

Deno.test("startWorker() never starts a task past its deadline", async () => {
  const t = await setup();
  try {
    // Without the AMQP expiration, which would have the broker drop it first.
    const late = JSON.stringify({ task: "probe", deadline: Date.now() - 1000 });
    await t.sendRaw(late, { correlationId: "late", messageId: "late" });
    const [letter] = await t.letters(1);
    assert.equal(letter.properties.headers?.["x-dlq-reason"], "expired");
    assert.equal(letter.properties.expiration, undefined, "a dead letter does not expire");
    await waitFor(() => t.replies.length === 1, "reply");
    assert.equal(t.replies[0].error?.type, "DeadlineExceeded");
    assert.equal(started, 0);
    assert.equal(t.worker.stats.expired, 1);
  } finally {
    await t.close();
  }
});

Deno.test("startWorker() aborts a running handler at the deadline and does not retry it", async () => {
  const t = await setup();
  try {
    const sent = Date.now();
    await t.send({ wait: 5000 }, { deadline: sent + 80 });
    await waitFor(() => t.replies.length === 1, "reply");
    const elapsed = Date.now() - sent;
    assert.equal(t.replies[0].error?.type, "DeadlineExceeded");
    // Half the handler's 5 s wait: what finishing the work, not the 80 ms deadline, would exceed.
    assert.ok(elapsed < 2500, `ended at the deadline, not after the work (${elapsed} ms)`);
    const [letter] = await t.letters(1);
    assert.equal(letter.properties.headers?.["x-dlq-reason"], "expired");
    assert.equal(started, 1);
  } finally {
    await t.close();
  }
});

Deno.test("startWorker() does not schedule a retry that would start after the deadline", async () => {
  const t = await setup();
  try {
    await t.send({ fail: true }, {
      deadline: Date.now() + 150,
      retry: { base_delay_ms: 5000, max_delay_ms: 5000, max_retries: 3 },
    });
    await waitFor(() => t.replies.length === 1, "reply");
    const [letter] = await t.letters(1);
    assert.equal(letter.properties.headers?.["x-dlq-reason"], "expired");
    assert.equal(t.worker.stats.retried, 0);
  } finally {
    await t.close();
  }
});

Deno.test("startWorker() fails a hung handler with TaskTimeout at timeoutMs and serves the next task", async () => {
  const t = await setup();
  try {
    await t.send({ hang: true });
    await t.send({});
    await waitFor(() => t.replies.length === 2, "both replies", 5000);
    const hung = t.replies.find((reply) => reply.status === "error")!;
    assert.equal(hung.error?.type, "TaskTimeout");
    assert.match(hung.error!.message, /after 200 ms, the function's timeoutMs/);
    assert.equal(hung.attempts, 2, "a timeout is retried");
    // A handler that hangs for good: both replies came (within waitFor's deadline) only
    // because each attempt was stopped at its 200 ms.
    assert.ok(t.replies.some((reply) => reply.status === "success"), "the next task ran");
    const [letter] = await t.letters(1);
    assert.equal(letter.properties.headers?.["x-dlq-reason"], "exhausted");
    assert.equal(letter.properties.headers?.["x-dlq-error-type"], "TaskTimeout");
  } finally {
    await t.close();
  }
});

Deno.test("startWorker() refuses out-of-range retry settings as InvalidRequest, never at settle time", async () => {
  const t = await setup();
  try {
    const retries: Record<string, number>[] = [
      { base_delay_ms: 2 ** 40 },
      { max_delay_ms: -1 },
      { max_retries: 1e9 },
    ];
    for (const retry of retries) {
      await t.send({ fail: true }, { retry });
    }
    await waitFor(() => t.replies.length === 3, "three replies");
    for (const reply of t.replies) assert.equal(reply.error?.type, "InvalidRequest");
    const letters = await t.letters(3);
    for (const letter of letters) {
      assert.equal(letter.properties.headers?.["x-dlq-reason"], "rejected");
    }
    assert.equal(started, 0);
  } finally {
    await t.close();
  }
});

Deno.test("startWorker() bounds what it echoes: replies, log lines and every header it writes", async () => {
  const t = await setup();
  try {
    const hugeTask = "t".repeat(500_000);
    await t.sendRaw(JSON.stringify({ task: hugeTask }), { correlationId: "c".repeat(255) });
    await t.send({ fail: true }, { retry: { max_retries: 0 } });
    await t.sendRaw(JSON.stringify({ task: "probe" }), {
      headers: { "x-big": "h".repeat(MAX_HEADER_BYTES) },
    });
    await waitFor(() => t.replies.length === 3, "three replies");
    for (const reply of t.replies) {
      assert.ok(reply.error!.message.length <= MAX_ERROR_MESSAGE_CHARS, reply.error!.message);
      assert.ok((reply.task ?? "").length <= 63);
    }
    assert.ok(t.replies.some((reply) => reply.error?.type === "HeadersTooLarge"));
    for (const letter of await t.letters(3)) {
      const headers = letter.properties.headers!;
      const own = Object.fromEntries(
        Object.entries(headers).filter(([k]) => k.startsWith("x-dlq")),
      );
      assert.ok(
        headerBytes(own, 1 << 20) <= MAX_RUNTIME_HEADER_BYTES,
        JSON.stringify(own).length + "",
      );
      assert.ok(headerBytes(headers, 1 << 20) <= MAX_HEADER_BYTES + MAX_RUNTIME_HEADER_BYTES);
    }
    for (const line of t.lines) assert.ok(line.length < 4000, `log line of ${line.length}`);
  } finally {
    await t.close();
  }
});

Deno.test("startWorker() answers a result larger than MAX_MESSAGE_BYTES with ResultTooLarge", async () => {
  const t = await setup({ maxMessageBytes: 4096 });
  try {
    await t.send({ big: 10_000 });
    await t.send({ big: 100 });
    await waitFor(() => t.replies.length === 2, "replies");
    assert.deepEqual(
      t.replies.map((reply) => reply.error?.type ?? reply.result).sort(),
      ["ResultTooLarge", "y".repeat(100)].sort(),
    );
  } finally {
    await t.close();
  }
});

Deno.test("startWorker() returns a delivery whose outcome it could not publish, and goes on serving", async () => {
  const hub = new MemoryBroker();
  const inner = hub.connect("probe");
  // Refused once, after the worker started: the retry's own declaration.
  let refusals = 0;
  const flaky: Broker = wrap(inner, {
    declareQueue(name: string, options?: QueueOptions) {
      if (name.includes(".retry.") && refusals-- > 0) {
        return Promise.reject(new TypeError("Cannot declare queue: refused"));
      }
      return inner.declareQueue(name, options);
    },
  });
  const client = hub.connect("dispatcher");
  const replies: TaskReply[] = [];
  const replyTo = await client.openReplyQueue((message) => {
    const parsed = parseReply(message.body);
    if (parsed.ok) replies.push(parsed.value);
  });
  started = 0;
  let worker: RunningWorker | undefined;
  try {
    worker = await startWorker(inProcessRunner(probe), flaky, {
      workerId: "w",
      returnDelayMs: 10,
    });
    refusals = 1;
    await client.publish(
      probe.queue,
      encodeRequest("probe", { fail: true }, { taskId: "flaky", replyTo }),
    );
    await client.publish(probe.queue, encodeRequest("probe", {}, { taskId: "next", replyTo }));
    await waitFor(() => replies.length === 2, "both answered");
    assert.ok(started >= 3, `the failed settle returned the task, which ran again (${started})`);
    assert.deepEqual(replies.map((r) => r.task_id).sort(), ["flaky", "next"]);
  } finally {
    await worker?.stop(0);
    await hub.shutdown();
  }
});
