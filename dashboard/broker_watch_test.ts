import assert from "node:assert/strict";
import { MemoryBroker } from "../core/broker/memory_broker.ts";
import { DASHBOARD_USER, encodeTaskEvent, EVENTS_EXCHANGE } from "../core/contract/mod.ts";
import { defineFunction } from "../runtime/define_function.ts";
import { inProcessRunner } from "../runtime/worker/runner.ts";
import { startWorker } from "../runtime/worker/start_worker.ts";
import { TaskClient } from "../client/task_client.ts";
import { waitFor } from "../tests/_helpers.ts";
import { type SeenEvent, startBrokerWatch } from "./broker_watch.ts";

const add = defineFunction({
  name: "add",
  queue: "queue_add",
  handler: (payload) => (payload.a as number) + (payload.b as number),
});

const FUNCTIONS = new Map([["add", { queue: "queue_add", user: "add" }]]);

Deno.test("startBrokerWatch() sees queues, workers and events, and drops events a stranger forged", async () => {
  const hub = new MemoryBroker();
  const worker = await startWorker(inProcessRunner(add), hub.connect("add"), {
    workerId: "add@1",
    events: true,
  });
  const events: SeenEvent[] = [];
  let changes = 0;
  const watch = await startBrokerWatch(hub.connect(DASHBOARD_USER), {
    functions: FUNCTIONS,
    pollMs: 20,
    pingMs: 20,
    onEvent: (event) => events.push(event),
    onChange: () => changes++,
  });
  const client = await TaskClient.open(hub.connect("dispatcher"), {
    functions: FUNCTIONS,
    events: true,
    caller: "dispatcher@test",
  });
  const stranger = hub.connect("task_b");
  try {
    assert.equal(await client.call("add", { a: 2, b: 2 }, { taskId: "t1" }), 4);
    await stranger.publishToExchange(
      EVENTS_EXCHANGE,
      encodeTaskEvent({
        kind: "task-failed",
        function: "add",
        queue: "queue_add",
        task_id: "forged",
        at: new Date().toISOString(),
        worker: "add@1",
      }),
    );
    await waitFor(
      () => events.length === 3 && watch.forgedEvents === 1 && watch.workers().length === 1,
      "three events, one forgery, the worker",
      2000,
      5,
    );
    assert.deepEqual(events.map((e) => [e.kind, e.task_id, e.sender]), [
      ["task-sent", "t1", "dispatcher"],
      ["task-started", "t1", "add"],
      ["task-succeeded", "t1", "add"],
    ]);
    const [info] = watch.workers();
    assert.equal(info.worker, "add@1");
    assert.equal(info.events, true);
    assert.deepEqual(watch.queues(), [{
      function: "add",
      queue: "queue_add",
      user: "add",
      exists: true,
      messages: 0,
      consumers: 1,
      deadLetters: 0,
    }]);
    assert.ok(changes > 0);
  } finally {
    await watch.stop();
    await client.close();
    await worker.stop(0);
    await hub.shutdown();
  }
});
