/**
 * Cancellation in the worker, on the in-memory broker: a cancelled call
 * that waits in the queue never starts, a running attempt is stopped (in
 * this isolate, and in a real sandbox whose handler never yields), only the
 * caller's own user or an operator may cancel, and a cancellation sent
 * before the worker started still holds.
 */

import assert from "node:assert/strict";
import type { Broker, ConsumeOptions, Delivery } from "../../core/broker/broker.ts";
import { BrokerUnavailableError, MemoryBroker } from "../../core/broker/mod.ts";
import {
  type CancelAnswer,
  CANCELLATIONS_STREAM,
  deadLetterQueueOf,
  encodeCancel,
  encodeRequest,
  parseCancelAnswer,
  parseReply,
  type TaskReply,
} from "../../core/contract/mod.ts";
import { createLogger, type Logger } from "../../core/log.ts";
import { defineFunction } from "../define_function.ts";
import { type HandlerRunner, inProcessRunner } from "../handler_runner.ts";
import { startSandbox } from "../sandbox/sandbox.ts";
import { type RunningWorker, startWorker } from "./consumer.ts";
import { CancellationsRefusedError } from "./cancellations.ts";
import { waitFor } from "../../tests/_helpers.ts";

/** Handler starts, by task id: a cancelled call that never starts never shows here. */
const starts: string[] = [];
let release: () => void = () => {};

const gated = defineFunction({
  name: "gated",
  queue: "queue_gated",
  timeoutMs: 60_000,
  async handler(payload, context) {
    starts.push(context.taskId!);
    if (payload.gate) await new Promise<void>((resolve) => release = resolve);
    if (payload.wait) {
      await new Promise((_, reject) => {
        context.signal.addEventListener("abort", () => reject(context.signal.reason));
      });
    }
    return "done";
  },
});

type Line = Record<string, unknown>;

/** A worker of `runner` on a fresh in-memory broker, and a caller as `dispatcher`. */
async function setUp(runner: HandlerRunner, log?: Logger) {
  starts.length = 0;
  const hub = new MemoryBroker();
  const worker = await startWorker(runner, hub.connect(runner.info.name), {
    workerId: `${runner.info.name}@test`,
    log,
  });
  const caller = await callerOn(hub, "dispatcher");
  return { hub, worker, caller };
}

/** A connection as `user` that collects replies and cancel answers on its Direct Reply-to. */
async function callerOn(hub: MemoryBroker, user: string) {
  const broker = hub.connect(user);
  const replies = new Map<string, TaskReply>();
  const answers: CancelAnswer[] = [];
  const replyTo = await broker.openReplyQueue((message) => {
    const answer = parseCancelAnswer(message);
    if (answer.ok) return answers.push(answer.value);
    const reply = parseReply(message.body);
    if (reply.ok) replies.set(reply.value.task_id!, reply.value);
  });
  return {
    broker,
    replies,
    answers,
    send: (queue: string, fn: string, taskId: string, payload: Record<string, unknown>) =>
      broker.publish(queue, encodeRequest(fn, payload, { taskId, replyTo })),
    cancel: (taskId: string) =>
      broker.publish(
        CANCELLATIONS_STREAM,
        encodeCancel(taskId, { replyTo, correlationId: taskId }),
      ),
  };
}

async function tearDown(hub: MemoryBroker, worker: RunningWorker, runner: HandlerRunner) {
  await worker.stop(0);
  await runner.close();
  await hub.shutdown();
}

async function letterOf(broker: Broker, queue: string) {
  const dlq = deadLetterQueueOf(queue);
  await waitFor(async () => (await broker.inspectQueue(dlq))?.messages === 1, "a dead letter");
  const letter = (await broker.get(dlq))!;
  broker.ack(letter);
  return letter.properties.headers ?? {};
}

Deno.test("a cancelled call waiting in the queue never starts: dead-lettered as cancelled, its caller told Cancelled", async () => {
  const runner = inProcessRunner(gated);
  const { hub, worker, caller } = await setUp(runner);
  try {
    // One handler at a time: the first holds the worker, the second waits in the queue.
    await caller.send(gated.queue, "gated", "first", { gate: true });
    await waitFor(() => starts.includes("first"), "the first call running");
    await caller.send(gated.queue, "gated", "queued", {});
    await caller.cancel("queued");
    // No worker runs it: none answers, which the canceller reads as "it will not start".
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.deepEqual(caller.answers, []);
    release();
    await waitFor(() => caller.replies.has("queued"), "the cancelled call's answer");
    const reply = caller.replies.get("queued")!;
    assert.equal(reply.status, "error");
    assert.equal(reply.error?.type, "Cancelled");
    assert.match(reply.error!.message, /broker user 'dispatcher' cancelled it/);
    assert.deepEqual(starts, ["first"], "the cancelled call never started");
    assert.equal(caller.replies.get("first")?.status, "success");
    const letter = await letterOf(caller.broker, gated.queue);
    assert.equal(letter["x-dlq-reason"], "cancelled");
    assert.equal(letter["x-dlq-sender"], "dispatcher");
    assert.equal(worker.stats.cancelled, 1);
  } finally {
    await tearDown(hub, worker, runner);
  }
});

Deno.test("a running attempt is stopped by its cancellation: its signal fires and the caller gets Cancelled", async () => {
  const runner = inProcessRunner(gated);
  const { hub, worker, caller } = await setUp(runner);
  try {
    await caller.send(gated.queue, "gated", "running", { wait: true });
    await waitFor(() => starts.includes("running"), "the call running");
    await caller.cancel("running");
    await waitFor(() => caller.replies.has("running"), "the cancelled call's answer");
    assert.equal(caller.replies.get("running")?.error?.type, "Cancelled");
    assert.match(caller.replies.get("running")!.error!.message, /Stopped the running attempt/);
    await waitFor(() => caller.answers.length === 1, "the worker's answer to the cancellation");
    assert.deepEqual(caller.answers.map((a) => [a.status, a.worker]), [["stopped", "gated@test"]]);
    assert.equal((await letterOf(caller.broker, gated.queue))["x-dlq-reason"], "cancelled");
    assert.equal(worker.stats.cancelled, 1);
    assert.equal(worker.stats.retried, 0, "a cancelled attempt is not retried");
    // Cancelling again is harmless, and says so.
    await caller.cancel("running");
    await waitFor(() => caller.answers.length === 2, "the second answer");
    assert.equal(caller.answers[1].status, "already_cancelled");
  } finally {
    await tearDown(hub, worker, runner);
  }
});

Deno.test("a cancellation from a user that did not send the call is refused: the call runs on, queued or running", async () => {
  const runner = inProcessRunner(gated);
  const { hub, worker, caller } = await setUp(runner);
  try {
    const stranger = await callerOn(hub, "task_b");
    await caller.send(gated.queue, "gated", "mine", { gate: true });
    await waitFor(() => starts.includes("mine"), "the call running");
    await caller.send(gated.queue, "gated", "mine-queued", {});
    await stranger.cancel("mine");
    await stranger.cancel("mine-queued");
    await waitFor(() => stranger.answers.length === 1, "the refusal");
    assert.equal(stranger.answers[0].status, "refused");
    assert.equal(stranger.answers[0].task_id, "mine");
    release();
    await waitFor(() => caller.replies.size === 2, "both calls answered");
    assert.equal(caller.replies.get("mine")?.status, "success");
    assert.equal(caller.replies.get("mine-queued")?.status, "success");
    assert.deepEqual(starts, ["mine", "mine-queued"]);
    assert.equal(worker.stats.cancelled, 0);
    // An operator may cancel any call; a finished one is only reported.
    const operator = await callerOn(hub, "operator");
    await operator.cancel("mine");
    await waitFor(() => operator.answers.length === 1, "the operator's answer");
    assert.deepEqual([operator.answers[0].status, operator.answers[0].outcome], [
      "finished",
      "success",
    ]);
  } finally {
    await tearDown(hub, worker, runner);
  }
});

Deno.test("a cancellation sent before the worker started still holds: the worker reads the stream's history first", async () => {
  const hub = new MemoryBroker();
  const early = await callerOn(hub, "dispatcher");
  // The stream exists before any worker (in the stack, the broker's definitions make it).
  await early.broker.declareQueue(CANCELLATIONS_STREAM, {
    type: "stream",
    maxAgeMs: 86_400_000,
    maxBytes: 1_000_000,
    segmentBytes: 100_000,
  });
  await early.cancel("before");
  // The request waits in its queue (made by a worker that went) before the worker starts.
  const runner = inProcessRunner(gated);
  await (await startWorker(runner, hub.connect("gated"), { workerId: "gone@test" })).stop(0);
  await early.send(gated.queue, "gated", "before", {});
  starts.length = 0;
  // A stream read slowly, as a long history is: the worker must not take the
  // request before the cancellation is read.
  const inner = hub.connect("gated");
  const slowStream = new Proxy(inner, {
    get(target, key) {
      const value = Reflect.get(target, key, target);
      if (key !== "consume") return typeof value === "function" ? value.bind(target) : value;
      return (queue: string, onDelivery: (d: Delivery) => void, options: ConsumeOptions) =>
        target.consume(
          queue,
          queue === CANCELLATIONS_STREAM
            ? (delivery) => setTimeout(() => onDelivery(delivery), 100)
            : onDelivery,
          options,
        );
    },
  });
  const worker = await startWorker(runner, slowStream, { workerId: "late@test" });
  try {
    await waitFor(() => early.replies.has("before"), "the answer");
    assert.equal(early.replies.get("before")?.error?.type, "Cancelled");
    assert.deepEqual(starts, []);
  } finally {
    await tearDown(hub, worker, runner);
  }
});

Deno.test("a cancelled handler that never yields is ended about a second after the cancel, and the other task of its sandbox goes back unharmed", async () => {
  const hub = new MemoryBroker();
  const lines: Line[] = [];
  const log = createLogger({ level: "debug", write: (line) => lines.push(JSON.parse(line)) });
  const escape = new URL("../../tests/fixtures/functions/escape.ts", import.meta.url);
  // The default stuckAfterMs: a second.
  const sandbox = await startSandbox({ module: escape, log });
  const worker = await startWorker(sandbox, hub.connect("escape"), {
    workerId: "escape@test",
    concurrency: 2,
    // Were the task beside the busy one counted, its next delivery would be its last.
    deliveryLimit: 1,
    log,
  });
  const caller = await callerOn(hub, "dispatcher");
  try {
    await caller.send("queue_escape", "escape", "busy", { attempt: "spin", target: "600000" });
    await caller.send("queue_escape", "escape", "beside", { attempt: "wait", target: "300" });
    await waitFor(
      () => lines.filter((line) => line.msg === "Task started").length === 2,
      "both running",
    );
    const cancelled = Date.now();
    await caller.cancel("busy");
    await waitFor(() => caller.replies.has("busy"), "the busy call's answer", 15_000);
    assert.equal(caller.replies.get("busy")?.error?.type, "Cancelled");
    await waitFor(() => caller.replies.has("beside"), "the other task's reply", 30_000);
    const restart = lines.find((line) => String(line.msg).includes("did not answer"));
    assert.ok(restart, "the stuck sandbox was ended");
    const endedAfter = Date.parse(String(restart.ts)) - cancelled;
    // A second of grace (stuckAfterMs), then terminated: far sooner than the 600 s spin.
    assert.ok(endedAfter >= 990, `ended ${endedAfter} ms after the cancel, not before a second`);
    assert.ok(endedAfter < 20_000, `ended ${endedAfter} ms after the cancel`);
    const beside = caller.replies.get("beside")!;
    assert.equal(beside.status, "success", JSON.stringify(beside));
    assert.equal(beside.attempts, 1, "handed back, not retried");
    // Handed back by the step-down (it waited behind the spinning handler),
    // and again should it be taken once more before the sandbox restarted:
    // each time uncounted, as its one attempt and the delivery limit of 1 show.
    assert.ok(worker.stats.handedBack >= 1, `handed back ${worker.stats.handedBack} times`);
    assert.equal(worker.stats.cancelled, 1);
  } finally {
    await worker.stop(0);
    await sandbox.close();
    await hub.shutdown();
  }
});

Deno.test("a cancelled handler in a sandbox sees its signal fire, and its sandbox goes on serving", async () => {
  const hub = new MemoryBroker();
  const lines: Line[] = [];
  const log = createLogger({ level: "debug", write: (line) => lines.push(JSON.parse(line)) });
  const escape = new URL("../../tests/fixtures/functions/escape.ts", import.meta.url);
  const sandbox = await startSandbox({ module: escape, log });
  const worker = await startWorker(sandbox, hub.connect("escape"), { workerId: "escape@t", log });
  const caller = await callerOn(hub, "dispatcher");
  try {
    await caller.send("queue_escape", "escape", "waits", { attempt: "wait", target: "600000" });
    await waitFor(() => lines.some((line) => line.msg === "Task started"), "running");
    await caller.cancel("waits");
    await waitFor(
      () => lines.some((line) => line.msg === "The handler's signal fired"),
      "the handler saw its signal",
    );
    const fired = lines.find((line) => line.msg === "The handler's signal fired")!;
    assert.match(JSON.stringify(fired), /cancelled the call/);
    await caller.send("queue_escape", "escape", "next", {});
    await waitFor(() => caller.replies.has("next"), "the next task");
    assert.equal(caller.replies.get("next")?.result, "served");
    assert.ok(!lines.some((line) => String(line.msg).includes("did not answer")), "no restart");
  } finally {
    await worker.stop(0);
    await sandbox.close();
    await hub.shutdown();
  }
});

Deno.test("a worker whose user may not read the cancellations stream stops at start, saying what to grant; a missing stream it may not declare, or one with no replica on its node, leaves it serving", async () => {
  const hub = new MemoryBroker();
  const runner = inProcessRunner(gated);
  const refusing = (inner: Broker, refuse: "consume" | "declare" | "replica") =>
    new Proxy(inner, {
      get(target, key) {
        const value = Reflect.get(target, key, target);
        const refused = (name: string) =>
          Promise.reject(
            new BrokerUnavailableError(
              refuse === "replica"
                ? `Cannot consume '${name}': Operation failed: BasicConsume; 406 (PRECONDITION-FAILED) with message "PRECONDITION_FAILED - stream queue '${name}' in vhost '/' does not have a running replica on the local node"`
                : `Cannot ${String(key)} '${name}' as the broker refused access: ACCESS_REFUSED`,
            ),
          );
        if ((refuse === "consume" || refuse === "replica") && key === "consume") {
          return (queue: string, ...rest: unknown[]) =>
            queue === CANCELLATIONS_STREAM
              ? refused(queue)
              : (value as (...args: unknown[]) => unknown).apply(target, [queue, ...rest]);
        }
        if (refuse === "declare" && key === "declareQueue") {
          return (queue: string, ...rest: unknown[]) =>
            queue === CANCELLATIONS_STREAM
              ? refused(queue)
              : (value as (...args: unknown[]) => unknown).apply(target, [queue, ...rest]);
        }
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
  try {
    await assert.rejects(
      () => startWorker(runner, refusing(hub.connect("gated"), "consume"), { workerId: "w1" }),
      (error: Error) =>
        error instanceof CancellationsRefusedError &&
        /grant its user read on it/.test(error.message),
    );
    const lines: Line[] = [];
    const log = createLogger({ write: (line) => lines.push(JSON.parse(line)) });
    // The stream is missing on this broker (the first worker made it on the other).
    await hub.connect("admin").deleteQueue(CANCELLATIONS_STREAM);
    const worker = await startWorker(runner, refusing(hub.connect("gated"), "declare"), {
      workerId: "w2",
      log,
    });
    try {
      assert.ok(lines.some((line) => String(line.msg).startsWith("Cannot declare the missing")));
      const caller = await callerOn(hub, "dispatcher");
      await caller.send(gated.queue, "gated", "served", {});
      await waitFor(() => caller.replies.has("served"), "served all the same");
    } finally {
      await worker.stop(0);
    }
    // A cluster node that holds no replica of the stream: served, and said.
    const elsewhere = await startWorker(runner, refusing(hub.connect("gated"), "replica"), {
      workerId: "w3",
      log,
    });
    try {
      assert.ok(lines.some((line) => /holds no replica of it/.test(String(line.msg))));
      const caller = await callerOn(hub, "dispatcher");
      await caller.send(gated.queue, "gated", "served-elsewhere", {});
      await waitFor(() => caller.replies.has("served-elsewhere"), "served on that node too");
    } finally {
      await elsewhere.stop(0);
    }
  } finally {
    await runner.close();
    await hub.shutdown();
  }
});
