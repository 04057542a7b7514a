import assert from "node:assert/strict";
import { MemoryBroker } from "../../core/broker/mod.ts";
import {
  deadLetterQueueOf,
  encodeRequest,
  type Message,
  SCHEDULE_EXCHANGE,
  SCHEDULE_TICK_HEADER,
  tickIdOf,
  tickTimeOf,
} from "../../core/contract/mod.ts";
import { SCHEDULER_USER } from "../../core/contract/users.ts";
import { defineFunction, type TaskContext } from "../define_function.ts";
import { inProcessRunner } from "../handler_runner.ts";
import { startWorker } from "./consumer.ts";
import { waitFor } from "../../tests/_helpers.ts";

/** A tick as the scheduler sends it: no reply_to, its id and time from the function and tick. */
function tick(name: string, tickMs: number, payload: Record<string, unknown> = {}): Message {
  return encodeRequest(name, payload, {
    taskId: tickIdOf(name, tickMs),
    headers: { [SCHEDULE_TICK_HEADER]: tickTimeOf(tickMs) },
    now: tickMs,
  });
}

async function setup(options: { concurrency?: number } = {}) {
  const runs: { payload: Record<string, unknown>; context: TaskContext }[] = [];
  const ticked = defineFunction({
    name: "ticked",
    queue: "queue_ticked",
    // The scheduler is not among them: the route it came by proves it.
    allowedSenders: ["dispatcher"],
    async handler(payload, context) {
      runs.push({ payload, context });
      // Long enough for a second copy to arrive while the first runs.
      await new Promise((resolve) => setTimeout(resolve, 20));
      return null;
    },
  });
  const hub = new MemoryBroker();
  const scheduler = hub.connect(SCHEDULER_USER);
  const dispatcher = hub.connect("dispatcher");
  const worker = await startWorker(inProcessRunner(ticked), hub.connect("ticked"), {
    workerId: "ticked@test",
    concurrency: options.concurrency ?? 1,
  });
  await scheduler.declareExchange(SCHEDULE_EXCHANGE, "direct");
  await scheduler.bindQueue("queue_ticked", SCHEDULE_EXCHANGE, "queue_ticked");
  return {
    runs,
    worker,
    scheduler,
    dispatcher,
    fire: (message: Message) =>
      scheduler.publishToExchange(SCHEDULE_EXCHANGE, message, "queue_ticked"),
    depth: async (queue: string) => (await scheduler.inspectQueue(queue))?.messages ?? -1,
    async settled(count: number) {
      await waitFor(
        () => worker.stats.succeeded + worker.stats.answeredAgain >= count,
        `${count} settled`,
      );
      await waitFor(() => worker.stats.inFlight === 0, "nothing in flight");
    },
    async close() {
      await worker.stop(0);
      await hub.shutdown();
    },
  };
}

Deno.test("a tick through the schedule exchange runs as the scheduler's, its time in context.tick", async () => {
  const t = await setup();
  try {
    const at = Date.parse("2026-11-29T06:00:00Z");
    await t.fire(tick("ticked", at, { report: "daily" }));
    await t.settled(1);
    assert.equal(t.runs.length, 1);
    assert.deepEqual(t.runs[0].payload, { report: "daily" });
    assert.equal(t.runs[0].context.tick, "2026-11-29T06:00:00.000Z");
    assert.equal(t.runs[0].context.taskId, "ticked@2026-11-29T06:00:00.000Z");
  } finally {
    await t.close();
  }
});

Deno.test("a tick fired twice (a scheduler handover) runs once in one worker, though it wants no reply", async () => {
  for (const concurrency of [1, 2]) {
    const t = await setup({ concurrency });
    try {
      const at = Date.parse("2026-11-29T06:00:01Z");
      // Both replicas write the same bytes for one tick.
      await t.fire(tick("ticked", at));
      await t.fire(tick("ticked", at));
      await t.fire(tick("ticked", at + 1000));
      await t.settled(3);
      assert.deepEqual(
        t.runs.map((run) => run.context.tick),
        ["2026-11-29T06:00:01.000Z", "2026-11-29T06:00:02.000Z"],
        `concurrency ${concurrency}`,
      );
      assert.equal(t.worker.stats.answeredAgain, 1);
      assert.equal(await t.depth("queue_ticked"), 0);
    } finally {
      await t.close();
    }
  }
});

Deno.test("the scheduler's user is refused on any other route, and a call's context.tick is null", async () => {
  const t = await setup();
  try {
    const at = Date.parse("2026-11-29T06:00:00Z");
    // Straight to the queue, as a caller would send it: not a route only the scheduler writes.
    await t.scheduler.publish("queue_ticked", tick("ticked", at));
    await waitFor(async () => await t.depth(deadLetterQueueOf("queue_ticked")) === 1, "refused");
    assert.equal(t.runs.length, 0);
    assert.equal(t.worker.stats.unauthenticated, 1);
    await t.dispatcher.publish(
      "queue_ticked",
      encodeRequest("ticked", {}, { taskId: "call-1" }),
    );
    await t.settled(1);
    assert.equal(t.runs[0].context.tick, null);
  } finally {
    await t.close();
  }
});
