import assert from "node:assert/strict";
import { BrokerUnavailableError } from "../../core/broker/broker.ts";
import { MemoryBroker } from "../../core/broker/mod.ts";
import {
  encodeRequest,
  type Message,
  parseReply,
  type TaskReply,
} from "../../core/contract/mod.ts";
import { createLogger } from "../../core/log.ts";
import { defineFunction } from "../define_function.ts";
import { inProcessRunner } from "../handler_runner.ts";
import { WorkerMetrics } from "../worker/observe.ts";
import { waitFor } from "../../tests/_helpers.ts";
import { runWorker } from "./main.ts";

const echo = defineFunction({
  name: "echo",
  queue: "queue_echo",
  handler: (payload) => ({ echoed: payload }),
});

Deno.test("runWorker() reconnects after the broker drops and serves again", async () => {
  const hub = new MemoryBroker();
  const lines: string[] = [];
  const controller = new AbortController();
  let connects = 0;
  const log = createLogger({ write: (line) => lines.push(line) });
  const running = runWorker(inProcessRunner(echo), {
    workerId: "w",
    signal: controller.signal,
    log,
    connect: () => {
      connects++;
      return Promise.resolve(hub.connect("echo"));
    },
  });
  const client = hub.connect("dispatcher");
  try {
    await waitFor(
      async () => (await client.inspectQueue(echo.queue))?.consumers === 1,
      "consuming",
    );
    hub.disconnectAll();
    await waitFor(() => connects === 2, "reconnect", 3000);
    const caller = hub.connect("dispatcher");
    const replies: Message[] = [];
    const replyTo = await caller.openReplyQueue((m) => replies.push(m));
    await caller.publish(echo.queue, encodeRequest("echo", {}, { taskId: "after", replyTo }));
    await waitFor(() => replies.length === 1, "reply after reconnect", 3000);
    assert.ok(lines.some((line) => JSON.parse(line).msg.includes("Lost the broker connection")));
  } finally {
    controller.abort();
    await running;
    await hub.shutdown();
  }
});

Deno.test("runWorker() logs one line per failed connection attempt and stops on abort", async () => {
  const lines: string[] = [];
  const controller = new AbortController();
  let attempts = 0;
  const running = runWorker(inProcessRunner(echo), {
    workerId: "w",
    signal: controller.signal,
    log: createLogger({ write: (line) => lines.push(line) }),
    connect: () => {
      attempts++;
      return Promise.reject(new BrokerUnavailableError("Cannot connect: nothing listening"));
    },
  });
  await waitFor(() => attempts >= 1 && lines.length >= 1, "first attempt");
  controller.abort();
  await running;
  const entries = lines.map((line) => JSON.parse(line));
  assert.equal(entries.filter((e) => e.msg === "Broker not reachable; retrying").length, attempts);
  assert.equal(entries.at(-1).msg, "Stopped while not connected");
  const line = entries[0];
  assert.equal(line.level, "warn");
  assert.equal(line.attempt, 1);
  assert.equal(line.error, "Cannot connect: nothing listening");
  assert.ok(!("stack" in line));
});

Deno.test("runWorker() rejects when the queue exists with other settings", async () => {
  const hub = new MemoryBroker();
  await hub.connect().declareQueue(echo.queue, { messageTtlMs: 5 });
  const controller = new AbortController();
  try {
    await assert.rejects(
      () =>
        runWorker(inProcessRunner(echo), {
          workerId: "w",
          signal: controller.signal,
          connect: () => Promise.resolve(hub.connect("echo")),
        }),
      /exists with other options/,
    );
  } finally {
    await hub.shutdown();
  }
});

Deno.test("runWorker() keeps one set of metrics across reconnections", async () => {
  const hub = new MemoryBroker();
  const metrics = new WorkerMetrics();
  const controller = new AbortController();
  const client = hub.connect("dispatcher");
  const replies: TaskReply[] = [];
  const replyTo = await client.openReplyQueue((message) => {
    const parsed = parseReply(message.body);
    if (parsed.ok) replies.push(parsed.value);
  });
  let connections = 0;
  const running = runWorker(inProcessRunner(echo), {
    workerId: "w",
    signal: controller.signal,
    metrics,
    connect: () => {
      connections++;
      return Promise.resolve(hub.connect("echo"));
    },
  });
  try {
    await waitFor(async () => (await client.inspectQueue(echo.queue))?.consumers === 1, "consumer");
    await client.publish(echo.queue, encodeRequest("echo", {}, { taskId: "before", replyTo }));
    await waitFor(() => replies.length === 1, "first reply");
    hub.disconnectAll("test drop");
    await waitFor(() => connections === 2, "reconnected", 5000);
    // The client was dropped too: reconnect it.
    const again = hub.connect("dispatcher");
    const replyTo2 = await again.openReplyQueue((message) => {
      const parsed = parseReply(message.body);
      if (parsed.ok) replies.push(parsed.value);
    });
    await waitFor(async () => (await again.inspectQueue(echo.queue))?.consumers === 1, "consumer");
    await again.publish(
      echo.queue,
      encodeRequest("echo", {}, { taskId: "after", replyTo: replyTo2 }),
    );
    await waitFor(() => replies.length === 2, "second reply");
    assert.equal(metrics.stats.succeeded, 2, "counted across the reconnection");
    const text = metrics.render({ function: "echo", queue: "queue_echo" }, true);
    assert.match(
      text,
      /worker_task_duration_seconds_count\{function="echo",queue="queue_echo",status="success"\} 2/,
    );
  } finally {
    controller.abort();
    await running;
    await hub.shutdown();
  }
});
