import assert from "node:assert/strict";
import {
  CANCELLATIONS_STREAM,
  CONTROL_EXCHANGE,
  deadLetterQueueOf,
  encodePing,
  encodeRequest,
  MAX_CONTROL_BYTES,
  type Message,
  parseWorkerInfo,
  replyQueueName,
  WORKER_INFO_MESSAGE_TYPE,
  type WorkerInfo,
} from "../../core/contract/mod.ts";
import { createLogger } from "../../core/log.ts";
import { controlQueueOf, DASHBOARD_USER } from "../../core/contract/names.ts";
import { defineFunction } from "../define_function.ts";
import { MemoryBroker } from "../../core/broker/mod.ts";
import { inProcessRunner } from "../handler_runner.ts";
import { startWorker } from "./consumer.ts";
import { waitFor } from "../../tests/_helpers.ts";

const hello = defineFunction({
  name: "hello",
  queue: "queue_hello",
  handler: () => "hi",
});

Deno.test("controlQueueOf() names the queue <queue>.control.<8 hex digits>, new each time", () => {
  const name = controlQueueOf("queue_a");
  assert.match(name, /^queue_a\.control\.[0-9a-f]{8}$/);
  assert.notEqual(controlQueueOf("queue_a"), name);
});

Deno.test("a worker answers a broadcast ping with who it is and what it has done", async () => {
  const hub = new MemoryBroker();
  const client = hub.connect("dispatcher");
  const answers: Message[] = [];
  const replyTo = await client.openReplyQueue((message) => answers.push(message));
  const first = await startWorker(inProcessRunner(hello), hub.connect("hello"), {
    workerId: "hello@one",
    concurrency: 2,
  });
  const second = await startWorker(inProcessRunner(hello), hub.connect("hello"), {
    workerId: "hello@two",
  });
  try {
    // One reply queue per connection, as with RabbitMQ's Direct Reply-to.
    const caller = hub.connect("dispatcher");
    const replies: Message[] = [];
    const tasks = await caller.openReplyQueue((message) => replies.push(message));
    for (const id of ["t1", "t2", "t3"]) {
      await caller.publish(hello.queue, encodeRequest("hello", {}, { taskId: id, replyTo: tasks }));
    }
    await waitFor(() => replies.length === 3, "three replies");

    await client.publishToExchange(CONTROL_EXCHANGE, encodePing("ping-1", replyTo));
    await waitFor(() => answers.length === 2, "an answer from each worker");
    const infos = answers.map((answer) => {
      assert.equal(answer.properties.correlationId, "ping-1");
      assert.equal(answer.properties.type, WORKER_INFO_MESSAGE_TYPE);
      const parsed = parseWorkerInfo(answer.body);
      assert.ok(parsed.ok, JSON.stringify(parsed));
      return parsed.value;
    }).sort((a, b) => a.worker.localeCompare(b.worker));
    assert.deepEqual(infos.map((i) => [i.worker, i.function, i.queue, i.concurrency]), [
      ["hello@one", "hello", "queue_hello", 2],
      ["hello@two", "hello", "queue_hello", 1],
    ]);
    assert.equal(infos[0].tasks_done + infos[1].tasks_done, 3, "every task counted once");
    for (const info of infos) {
      assert.equal(info.tasks_done, info.succeeded);
      assert.equal(info.in_flight, 0);
      assert.ok(info.uptime_ms >= 0 && Date.parse(info.started_at) <= Date.now());
    }
  } finally {
    await first.stop(0);
    await second.stop(0);
    await hub.shutdown();
  }
});

Deno.test("a stopped worker's control queue is gone and it no longer answers", async () => {
  const hub = new MemoryBroker();
  const client = hub.connect("dispatcher");
  const answers: WorkerInfo[] = [];
  const replyTo = await client.openReplyQueue((message) => {
    const parsed = parseWorkerInfo(message.body);
    if (parsed.ok) answers.push(parsed.value);
  });
  const running = await startWorker(inProcessRunner(hello), hub.connect("hello"), {
    workerId: "hello@running",
  });
  const stopped = await startWorker(inProcessRunner(hello), hub.connect("hello"), {
    workerId: "hello@stopped",
  });
  try {
    await stopped.stop(0);
    // A message that is not a ping is ignored, and the worker goes on answering.
    await client.publishToExchange(CONTROL_EXCHANGE, {
      body: new TextEncoder().encode('{"kind":"shutdown"}'),
      properties: { replyTo, correlationId: "bad" },
    });
    await client.publishToExchange(CONTROL_EXCHANGE, encodePing("ping-2", replyTo));
    await waitFor(() => answers.length === 1, "the running worker's answer");
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.deepEqual(answers.map((a) => a.worker), ["hello@running"]);
  } finally {
    await running.stop(0);
    await hub.shutdown();
  }
});

Deno.test("startWorker() binds its control queue before it consumes, so no ping misses it", async () => {
  const hub = new MemoryBroker();
  const inner = hub.connect("hello");
  const calls: string[] = [];
  const recording = new Proxy(inner, {
    get(target, key, receiver) {
      const value = Reflect.get(target, key, receiver);
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        if (key === "bindQueue" || key === "consume") calls.push(`${String(key)} ${args[0]}`);
        return value.apply(target, args);
      };
    },
  });
  const worker = await startWorker(inProcessRunner(hello), recording, {
    workerId: "hello@order",
  });
  try {
    assert.equal(calls.length, 4, calls.join(", "));
    assert.match(calls[0], /^bindQueue queue_hello\.control\.[0-9a-f]{8}$/);
    assert.match(calls[1], /^consume queue_hello\.control\./);
    // Then the cancellations, read before any request is taken.
    assert.equal(calls[2], `consume ${CANCELLATIONS_STREAM}`);
    assert.equal(calls[3], "consume queue_hello");
  } finally {
    await worker.stop(0);
    await hub.shutdown();
  }
});

Deno.test("a worker answers the dashboard's ping, not one from a user that may not call it", async () => {
  const hub = new MemoryBroker();
  const worker = await startWorker(inProcessRunner(hello), hub.connect("hello"), {
    workerId: "hello@watched",
    events: true,
  });
  try {
    const answersTo = async (user: string) => {
      const asker = hub.connect(user);
      const answers: WorkerInfo[] = [];
      const replyTo = await asker.openReplyQueue((message) => {
        const parsed = parseWorkerInfo(message.body);
        if (parsed.ok) answers.push(parsed.value);
      });
      await asker.publishToExchange(CONTROL_EXCHANGE, encodePing(`from-${user}`, replyTo));
      return answers;
    };
    const dashboard = await answersTo(DASHBOARD_USER);
    const stranger = await answersTo("task_b");
    await waitFor(() => dashboard.length === 1, "the answer to the dashboard");
    assert.equal(dashboard[0].worker, "hello@watched");
    assert.equal(dashboard[0].events, true, "it says it publishes task events");
    // The stranger's ping went out after the dashboard's: by now it would have its answer.
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.deepEqual(stranger, []);
  } finally {
    await worker.stop(0);
    await hub.shutdown();
  }
});

Deno.test("a worker sends a pong only to Direct Reply-to or a caller's reply queue, never into a queue", async () => {
  const hub = new MemoryBroker();
  const client = hub.connect("dispatcher");
  const worker = await startWorker(inProcessRunner(hello), hub.connect("hello"), {
    workerId: "hello@pong",
  });
  const replies = replyQueueName();
  try {
    for (const queue of ["queue_victim", replies]) await client.declareQueue(queue);
    // A function's queue, the worker's own, its dead letters: none may receive a pong.
    for (const target of ["queue_victim", hello.queue, deadLetterQueueOf(hello.queue)]) {
      await client.publishToExchange(CONTROL_EXCHANGE, encodePing(`to-${target}`, target));
    }
    await client.publishToExchange(CONTROL_EXCHANGE, encodePing("to-replies", replies));
    await waitFor(
      async () => (await client.inspectQueue(replies))?.messages === 1,
      "the pong in the caller's reply queue",
    );
    // The pings went out in order, one control consumer answers them in order.
    for (const queue of ["queue_victim", hello.queue, deadLetterQueueOf(hello.queue)]) {
      assert.equal((await client.inspectQueue(queue))?.messages, 0, queue);
    }
    const pong = (await client.get(replies))!;
    assert.equal(pong.properties.correlationId, "to-replies");
  } finally {
    await worker.stop(0);
    await hub.shutdown();
  }
});

Deno.test("a worker ignores a control message over 64 KiB and answers one within it", async () => {
  const hub = new MemoryBroker();
  const client = hub.connect("dispatcher");
  const answers: Message[] = [];
  const replyTo = await client.openReplyQueue((message) => answers.push(message));
  const worker = await startWorker(inProcessRunner(hello), hub.connect("hello"), {
    workerId: "hello@big",
  });
  const ping = (id: string, bytes: number) => {
    const head = '{"kind":"ping","pad":"';
    const body = head + "x".repeat(bytes - head.length - 2) + '"}';
    assert.equal(body.length, bytes);
    return {
      body: new TextEncoder().encode(body),
      properties: { contentType: "application/json", correlationId: id, replyTo },
    };
  };
  try {
    await client.publishToExchange(CONTROL_EXCHANGE, ping("too-big", MAX_CONTROL_BYTES + 1));
    await client.publishToExchange(CONTROL_EXCHANGE, ping("just-fits", MAX_CONTROL_BYTES));
    await waitFor(() => answers.length === 1, "the answer to the ping that fits");
    await worker.stop(0);
    assert.deepEqual(answers.map((a) => a.properties.correlationId), ["just-fits"]);
  } finally {
    await hub.shutdown();
  }
});

Deno.test("a worker whose control queue the broker refuses still serves, and answers pings once it opens", async () => {
  const hub = new MemoryBroker();
  const inner = hub.connect("hello");
  let refuse = true;
  const lines: Record<string, unknown>[] = [];
  // As RabbitMQ refuses a new queue once the vhost's queue limit is reached.
  const limited = new Proxy(inner, {
    get(target, key, receiver) {
      const value = Reflect.get(target, key, receiver);
      if (key !== "declareQueue") return typeof value === "function" ? value.bind(target) : value;
      return (name: string, options: unknown) =>
        refuse && name.includes(".control.")
          ? Promise.reject(new Error(`cannot declare queue '${name}': queue limit reached`))
          : value.call(target, name, options);
    },
  });
  const worker = await startWorker(inProcessRunner(hello), limited, {
    workerId: "hello@limited",
    log: createLogger({ level: "debug", write: (line) => lines.push(JSON.parse(line)) }),
    controlRetry: { baseDelayMs: 5, factor: 1, maxDelayMs: 5, jitter: 0 },
  });
  const client = hub.connect("dispatcher");
  const answers: Message[] = [];
  const replyTo = await client.openReplyQueue((message) => answers.push(message));
  try {
    await client.publish(hello.queue, encodeRequest("hello", {}, { taskId: "t", replyTo }));
    await waitFor(() => answers.length === 1, "the task served without a control queue");
    await waitFor(
      () =>
        lines.filter((l) => String(l.msg).startsWith("Cannot open the control queue")).length >= 2,
      "retried",
    );
    await client.publishToExchange(CONTROL_EXCHANGE, encodePing("unanswered", replyTo));
    refuse = false;
    await waitFor(
      () => lines.some((l) => l.msg === "Opened the control queue: answering pings"),
      "opened",
    );
    await client.publishToExchange(CONTROL_EXCHANGE, encodePing("answered", replyTo));
    await waitFor(() => answers.length === 2, "the pong once the queue opened");
    assert.equal(answers[1].properties.correlationId, "answered");
  } finally {
    await worker.stop(0);
    await hub.shutdown();
  }
});
