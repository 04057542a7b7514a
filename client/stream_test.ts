import assert from "node:assert/strict";
import { MemoryBroker } from "../core/broker/mod.ts";
import { defineFunction } from "../runtime/define_function.ts";
import { inProcessRunner } from "../runtime/handler_runner.ts";
import { startWorker } from "../runtime/worker/consumer.ts";
import { waitFor } from "../tests/_helpers.ts";
import { type StreamCall, streamCalls } from "./stream.ts";
import { TaskClient } from "./task_client.ts";

const echo = defineFunction({
  name: "echo",
  queue: "queue_echo",
  async handler(payload) {
    const ms = payload.ms;
    if (typeof ms === "number") await new Promise((resolve) => setTimeout(resolve, ms));
    return payload.n ?? null;
  },
});

async function setup(concurrency: number) {
  const hub = new MemoryBroker();
  const worker = await startWorker(inProcessRunner(echo), hub.connect("echo"), {
    workerId: "echo@1",
    concurrency,
  });
  const client = await TaskClient.open(hub.connect("dispatcher"), {
    functions: new Map([["echo", { queue: "queue_echo", user: "echo" }]]),
  });
  return {
    client,
    worker,
    async close() {
      await client.close();
      await worker.stop(0);
      await hub.shutdown();
    },
  };
}

/** `count` calls, made only as the stream takes them; `pulled` counts those taken. */
function counted(count: number, payload: (i: number) => Record<string, unknown> = (n) => ({ n })) {
  const state = { pulled: 0 };
  function* calls(): Generator<StreamCall<number>> {
    for (let i = 0; i < count; i++) {
      state.pulled++;
      yield { function: "echo", payload: payload(i), context: i };
    }
  }
  return { state, calls: calls() };
}

Deno.test("TaskClient.stream() keeps at most `window` calls in flight and hands over every outcome as it ends", async () => {
  const t = await setup(256);
  try {
    const count = 20_000;
    const window = 64;
    const { state, calls } = counted(count);
    const seen = new Set<number>();
    let peakPending = 0;
    let peakTaken = 0;
    for await (const { call, index, outcome } of t.client.stream(calls, { window })) {
      peakPending = Math.max(peakPending, t.client.pending);
      // Taken from the generator and not yet read: in flight, or ended unread.
      peakTaken = Math.max(peakTaken, state.pulled - seen.size);
      assert.equal(outcome.kind, "reply");
      assert.ok(outcome.kind === "reply" && outcome.reply.result === index);
      assert.equal(call.context, index);
      seen.add(index);
    }
    assert.equal(seen.size, count, "every call once");
    assert.ok(peakTaken <= window, `at most the window taken at once (${peakTaken})`);
    assert.ok(peakPending <= window, `at most the window in flight (${peakPending})`);
    assert.equal(t.client.pending, 0, "nothing left waiting");
  } finally {
    await t.close();
  }
});

Deno.test("TaskClient.stream() sends nothing more while the window's outcomes wait to be read", async () => {
  const t = await setup(64);
  try {
    const { state, calls } = counted(1000);
    const stream = t.client.stream(calls, { window: 10 });
    const first = await stream.next();
    assert.equal(first.done, false);
    // The other nine end unread; then the window is full and the stream waits.
    await waitFor(() => t.worker.stats.succeeded === 10, "the window's calls answered");
    assert.equal(state.pulled, 10, "no call taken beyond the window");
    await stream.next();
    await waitFor(() => state.pulled === 11, "one more taken once one was read");
    await stream.return();
    assert.equal(state.pulled, 11, "breaking off takes no more");
  } finally {
    await t.close();
  }
});

Deno.test("a streamed call's timeout counts from when it is sent, not from the start of the fan-out", async () => {
  // One task at a time, 60 ms each, 100 ms to answer each call.
  const t = await setup(1);
  try {
    const calls = () =>
      [0, 1, 2].map((n): StreamCall => ({
        function: "echo",
        payload: { n, ms: 60 },
        timeoutMs: 100,
      }));
    const kinds = [];
    for await (const { outcome } of t.client.stream(calls(), { window: 1 })) {
      kinds.push(outcome.kind);
    }
    assert.deepEqual(kinds, ["reply", "reply", "reply"]);
    // All at once, the third waits 120 ms behind the others: its clock ran meanwhile.
    const all = await t.client.callAll(calls());
    assert.equal(all[2].status, "rejected");
  } finally {
    await t.close();
  }
});

Deno.test("streamCalls() fails when the broker does, and refuses a window out of range", async () => {
  const t = await setup(4);
  try {
    await assert.rejects(
      async () => {
        for await (const _ of streamCalls(t.client, [{ function: "echo" }], { window: 0 })) {
          // Never reached.
        }
      },
      RangeError,
    );
    const { calls } = counted(100, (n) => ({ n, ms: 50 }));
    const stream = t.client.stream(calls, { window: 5 });
    await stream.next();
    await t.client.close();
    await assert.rejects(() => stream.next(), /client was closed/);
  } finally {
    await t.close();
  }
});
