/**
 * Calls that outlive their caller, and cancellation, from the client's side,
 * on the in-memory broker with an in-process worker: submit, collect once,
 * a named caller killed and started again, the journal, and cancel.
 */

import assert from "node:assert/strict";
import { type Broker, type Delivery, MemoryBroker } from "../core/broker/mod.ts";
import { defineFunction } from "../runtime/define_function.ts";
import { inProcessRunner } from "../runtime/handler_runner.ts";
import { type RunningWorker, startWorker } from "../runtime/worker/consumer.ts";
import { waitFor } from "../tests/_helpers.ts";
import { withTempDir } from "../tests/_temp_dir.ts";
import { ResultNotReadyError } from "./call_book.ts";
import type { CallOutcome } from "./protocol.ts";
import { TaskCancelledError } from "./errors.ts";
import { TaskClient, type TaskClientOptions } from "./task_client.ts";

/** Every run of the handler, by task id: a call run twice shows twice. */
const runs: string[] = [];
let release: () => void = () => {};

const echo = defineFunction({
  name: "echo",
  queue: "queue_echo",
  timeoutMs: 60_000,
  async handler(payload, context) {
    runs.push(context.taskId!);
    if (payload.gate) await new Promise<void>((resolve) => release = resolve);
    if (payload.wait) {
      await new Promise((_, reject) => {
        context.signal.addEventListener("abort", () => reject(context.signal.reason));
      });
    }
    return payload.n ?? "done";
  },
});

const FUNCTIONS = new Map([
  ["echo", { queue: "queue_echo", user: "echo" }],
  ["celery_fn", { queue: "queue_c", user: "task_c", protocol: "celery" as const }],
]);

async function setUp() {
  runs.length = 0;
  const hub = new MemoryBroker();
  const worker: RunningWorker = await startWorker(inProcessRunner(echo), hub.connect("echo"), {
    workerId: "echo@1",
  });
  const open = (options: Partial<TaskClientOptions> = {}, broker?: Broker) =>
    TaskClient.open(broker ?? hub.connect("dispatcher"), { functions: FUNCTIONS, ...options });
  return {
    hub,
    open,
    async close() {
      await worker.stop(0);
      await hub.shutdown();
    },
  };
}

const resultOf = (outcome: CallOutcome) => outcome.kind === "reply" ? outcome.reply.result : null;

Deno.test("TaskClient.submit() returns an id at once; result() collects the outcome once", async () => {
  const t = await setUp();
  const client = await t.open();
  try {
    const id = await client.submit("echo", { n: 1, gate: true }, { taskId: "call-1" });
    assert.equal(id, "call-1");
    assert.deepEqual(client.status(id), { state: "pending" });
    await waitFor(() => runs.includes("call-1"), "running");
    await assert.rejects(() => client.result(id, { timeoutMs: 10 }), ResultNotReadyError);
    release();
    const outcome = await client.result(id);
    assert.equal(resultOf(outcome), 1);
    assert.deepEqual(client.status(id), { state: "collected" });
    await assert.rejects(() => client.result(id), /collected already/);
    await assert.rejects(() => client.result("never"), /did not submit it/);
    await assert.rejects(() => client.submit("echo", {}, { taskId: "call-1" }), /already/);
    await assert.rejects(() => client.submit("celery_fn", {}), /Celery workers serve it/);
  } finally {
    await client.close();
    await t.close();
  }
});

Deno.test("TaskClient.results() yields every submitted call's outcome once, as they end", async () => {
  const t = await setUp();
  const client = await t.open();
  try {
    const ids = await Promise.all([1, 2, 3].map((n) => client.submit("echo", { n })));
    const got: unknown[] = [];
    for await (const outcome of client.results()) {
      got.push(resultOf(outcome));
      if (got.length === 3) break;
    }
    assert.deepEqual(got.sort(), [1, 2, 3]);
    for (const id of ids) assert.deepEqual(client.status(id), { state: "collected" });
    assert.deepEqual(await client.outstanding(), []);
  } finally {
    await client.close();
    await t.close();
  }
});

Deno.test("a named client killed mid-run is taken up by the next run under its name: each call collected once, none run twice", async () => {
  const t = await setUp();
  const first = t.hub.connect("dispatcher");
  const a = await t.open({ name: "nightly" }, first);
  try {
    assert.equal(a.replyTo, "replies.named.dispatcher.nightly");
    await a.submit("echo", { n: 1 }, { taskId: "c1" });
    await a.submit("echo", { n: 2, gate: true }, { taskId: "c2" });
    await waitFor(() => runs.includes("c2"), "c2 running");
    assert.equal(resultOf(await a.result("c1")), 1);
    // Killed: the connection drops with nothing more acknowledged.
    await first.close();
    await a.close();
    release();
    const b = await t.open({ name: "nightly" });
    try {
      assert.deepEqual(await b.outstanding(), ["c2"], "c1 was collected; c2 is still due");
      const outcome = await b.result("c2");
      assert.equal(resultOf(outcome), 2);
      assert.deepEqual(await b.outstanding(), []);
      assert.deepEqual(runs.sort(), ["c1", "c2"], "no call ran twice");
    } finally {
      await b.close();
    }
  } finally {
    await t.close();
  }
});

Deno.test("with a journal, a call collected just before a crash is not collected again; without one it comes back", async () => {
  await withTempDir(async (dir) => {
    for (const journal of [`${dir}/calls.jsonl`, undefined]) {
      const t = await setUp();
      // Acknowledgements that never reach the broker: the crash comes right after collection.
      const lossy = t.hub.connect("dispatcher");
      const dropAcks = new Proxy(lossy, {
        get(target, key) {
          if (key === "ack") return (_: Delivery) => {};
          const value = Reflect.get(target, key, target);
          return typeof value === "function" ? value.bind(target) : value;
        },
      });
      const a = await t.open({ name: "job", journal }, dropAcks);
      await a.submit("echo", { n: 7 }, { taskId: "only" });
      assert.equal(resultOf(await a.result("only")), 7);
      await lossy.close();
      await a.close();
      const b = await t.open({ name: "job", journal });
      try {
        const again = await b.outstanding();
        if (journal) {
          assert.deepEqual(again, [], "the journal says it was collected");
          const lines = (await Deno.readTextFile(journal)).trim().split("\n");
          assert.equal(lines.length, 1);
          assert.equal(JSON.parse(lines[0]).id, "only");
        } else {
          assert.deepEqual(again, ["only"], "without a journal: at least once");
          assert.equal(resultOf(await b.result("only")), 7);
        }
        assert.deepEqual(runs, ["only"], "it ran once either way");
      } finally {
        await b.close();
        await t.close();
      }
    }
  });
});

Deno.test("TaskClient.cancel() stops a running call and keeps a queued one from starting; the caller gets Cancelled", async () => {
  const t = await setUp();
  const client = await t.open();
  try {
    await client.submit("echo", { wait: true }, { taskId: "running" });
    await waitFor(() => runs.includes("running"), "running");
    await client.submit("echo", { n: 2 }, { taskId: "queued" });
    const stopped = await client.cancel("running");
    assert.equal(stopped.status, "stopped");
    assert.deepEqual(stopped.answers.map((a) => a.worker), ["echo@1"]);
    const first = await client.result("running");
    assert.equal(first.kind === "reply" && first.reply.error?.type, "Cancelled");
    // The queued call started meanwhile (the worker was free) or not: cancel the next one before.
    await client.submit("echo", { gate: true }, { taskId: "holder" });
    await client.submit("echo", { n: 3 }, { taskId: "waiting" });
    await waitFor(() => runs.includes("holder"), "the holder running");
    const notRunning = await client.cancel("waiting", { waitMs: 50 });
    assert.equal(notRunning.status, "not_running");
    release();
    const waiting = await client.result("waiting");
    assert.equal(waiting.kind === "reply" && waiting.reply.error?.type, "Cancelled");
    assert.ok(!runs.includes("waiting"), "the cancelled call never started");
    assert.equal((await client.cancel("waiting", { waitMs: 50 })).status, "already_cancelled");
    assert.equal(resultOf(await client.result("holder")), "done");
    const finished = await client.cancel("holder");
    assert.deepEqual([finished.status, finished.outcome], ["finished", "success"]);
    // call() turns a Cancelled reply into a TaskCancelledError.
    const call = client.call("echo", { wait: true }, { taskId: "called" });
    await waitFor(() => runs.includes("called"), "the call running");
    await client.cancel("called");
    await assert.rejects(call, TaskCancelledError);
  } finally {
    await client.close();
    await t.close();
  }
});

Deno.test("TaskClient.cancel() from a user that did not send the call is refused, and the call runs on", async () => {
  const t = await setUp();
  const owner = await t.open();
  const stranger = await t.open({}, t.hub.connect("task_b"));
  try {
    await owner.submit("echo", { gate: true, n: 5 }, { taskId: "mine" });
    await waitFor(() => runs.includes("mine"), "running");
    assert.equal((await stranger.cancel("mine")).status, "refused");
    release();
    assert.equal(resultOf(await owner.result("mine")), 5);
  } finally {
    await stranger.close();
    await owner.close();
    await t.close();
  }
});

Deno.test("a named client taken up again collects a reply its queue gives back ahead of the call's record", async () => {
  const t = await setUp();
  const first = t.hub.connect("dispatcher");
  const a = await t.open({ name: "reordered" }, first);
  const queue = "replies.named.dispatcher.reordered";
  try {
    await a.submit("echo", { n: 2, gate: true }, { taskId: "c2" });
    await waitFor(() => runs.includes("c2"), "c2 running");
    release();
    // The reply reached the first run, which held it with the record, unacknowledged.
    await waitFor(() => a.status("c2").state === "done", "c2's reply held by the first run");
    await first.close();
    await a.close();
    // A queue gives back a dead connection's messages in no set order: the
    // second run sees the reply first, then the record.
    const second = t.hub.connect("dispatcher");
    const reordering = new Proxy(second, {
      get(target, key) {
        if (key !== "consume") {
          const value = Reflect.get(target, key, target);
          return typeof value === "function" ? value.bind(target) : value;
        }
        return (name: string, onDelivery: (d: Delivery) => void, options?: unknown) => {
          if (name !== queue) return target.consume(name, onDelivery, options as never);
          let held: Delivery | undefined;
          return target.consume(name, (delivery) => {
            const isRecord = delivery.properties.userId === "dispatcher" &&
              delivery.routingKey !== queue && delivery.properties.correlationId === "c2";
            if (isRecord && !held) return void (held = delivery);
            onDelivery(delivery);
            if (held && delivery.properties.correlationId === "c2") {
              const record = held;
              held = undefined;
              onDelivery(record);
            }
          }, options as never);
        };
      },
    });
    const b = await t.open({ name: "reordered" }, reordering);
    try {
      assert.deepEqual(await b.outstanding(), ["c2"]);
      const outcome = await b.result("c2", { timeoutMs: 5_000 });
      assert.equal(outcome.kind, "reply", "its reply, not a timeout at its deadline");
      assert.equal(resultOf(outcome), 2);
      assert.deepEqual(runs, ["c2"], "it ran once");
    } finally {
      await b.close();
    }
  } finally {
    await t.close();
  }
});
