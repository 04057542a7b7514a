import assert from "node:assert/strict";
import { BrokerUnavailableError, MemoryBroker } from "../core/broker/mod.ts";
import {
  DASHBOARD_USER,
  encodeSchedulerNote,
  encodeTaskEvent,
  EVENTS_EXCHANGE,
  SCHEDULER_USER,
  type SchedulerNote,
} from "../core/contract/mod.ts";
import { defineFunction } from "../runtime/define_function.ts";
import { inProcessRunner } from "../runtime/handler_runner.ts";
import { startWorker } from "../runtime/worker/consumer.ts";
import { TaskClient } from "../client/task_client.ts";
import { waitFor } from "../tests/_helpers.ts";
import { claimEventsQueue, type SeenEvent, startBrokerWatch } from "./broker_watch.ts";
import { DASHBOARD_EVENT_QUEUES } from "../ops/rabbitmq/definitions.ts";
import { DashboardState } from "./dashboard_state.ts";
import { SseHub } from "./sse.ts";
import { MAX_OPEN_TASKS } from "./task_stats.ts";

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

function sent(taskId: string, extra: Record<string, unknown> = {}) {
  return encodeTaskEvent({
    kind: "task-sent",
    function: "add",
    queue: "queue_add",
    task_id: taskId,
    at: new Date().toISOString(),
    ...extra,
  });
}

Deno.test("startBrokerWatch() takes task-sent events from callers' users only, never from a worker", async () => {
  const hub = new MemoryBroker();
  const events: SeenEvent[] = [];
  const watch = await startBrokerWatch(hub.connect(DASHBOARD_USER), {
    functions: new Map([
      ["add", { queue: "queue_add", user: "add" }],
      ["sub", { queue: "queue_sub", user: "sub" }],
    ]),
    callers: ["dispatcher", "client_app"],
    pollMs: 1000,
    pingMs: 1000,
    onEvent: (event) => events.push(event),
    onChange: () => {},
  });
  try {
    for (const user of ["add", "sub", "stranger", "dispatcher", "client_app"]) {
      await hub.connect(user).publishToExchange(EVENTS_EXCHANGE, sent(`from-${user}`));
    }
    await waitFor(
      () => events.length === 2 && watch.forgedEvents === 3,
      "2 kept, 3 forged",
      2000,
      5,
    );
    assert.deepEqual(events.map((e) => [e.task_id, e.sender]), [
      ["from-dispatcher", "dispatcher"],
      ["from-client_app", "client_app"],
    ]);
  } finally {
    await watch.stop();
    await hub.shutdown();
  }
});

Deno.test("a flood of 10,000 never-finishing task-sent events with long ids leaves the dashboard's memory bounded", async () => {
  const hub = new MemoryBroker();
  const sse = new SseHub();
  const state = new DashboardState({ functions: FUNCTIONS, broker: "memory", hub: sse });
  let seen = 0;
  const watch = await startBrokerWatch(hub.connect(DASHBOARD_USER), {
    functions: FUNCTIONS,
    pollMs: 1000,
    pingMs: 1000,
    onEvent: (event) => {
      seen++;
      state.onEvent(event);
    },
    onChange: () => {},
  });
  const dispatcher = hub.connect("dispatcher");
  try {
    const pad = "\u0101".repeat(4_000); // two-byte characters, 4,000 of them
    const junk = { worker: pad, error: pad, extra: pad };
    for (let i = 0; i < 10_000; i++) {
      // Half with ids far past any real one, half at the longest id kept.
      const id = i % 2 === 0 ? `${i}-${pad}` : `${i}-`.padEnd(255, "x");
      await dispatcher.publishToExchange(EVENTS_EXCHANGE, sent(id, junk));
    }
    await waitFor(() => seen === 5_000, "the 5,000 events with ids of 255 characters", 20_000, 10);
    const kept = state.retained();
    assert.ok(kept.openTasks <= MAX_OPEN_TASKS, `${kept.openTasks} sent times`);
    assert.equal(kept.openTasks, 5_000, "the long ids were never kept");
    assert.ok(kept.openTaskChars <= kept.openTasks * ("add".length + 1 + 255));
    assert.equal(kept.recentEvents, 200);
    assert.ok(kept.recentChars < 200 * 2_500, `${kept.recentChars} characters of recent events`);
    // The figures recover: a real call's send and end give its end-to-end time.
    const worker = await startWorker(inProcessRunner(add), hub.connect("add"), {
      workerId: "add@1",
      events: true,
    });
    const client = await TaskClient.open(dispatcher, {
      functions: FUNCTIONS,
      events: true,
      caller: "dispatcher@test",
    });
    try {
      assert.equal(await client.call("add", { a: 1, b: 2 }), 3);
      await waitFor(
        () => state.snapshot().functions[0].figures.endToEndP50 !== null,
        "an end-to-end time",
        2000,
        5,
      );
    } finally {
      await client.close();
      await worker.stop(0);
    }
  } finally {
    await watch.stop();
    state.close();
    sse.close();
    await hub.shutdown();
  }
});

Deno.test("claimEventsQueue() gives each dashboard one of the eight named queues, and a ninth none", async () => {
  const hub = new MemoryBroker();
  try {
    const dashboards = DASHBOARD_EVENT_QUEUES.map(() => hub.connect(DASHBOARD_USER));
    const claimed = [];
    for (const dashboard of dashboards) claimed.push(await claimEventsQueue(dashboard));
    assert.deepEqual(claimed, [...DASHBOARD_EVENT_QUEUES]);
    const ninth = hub.connect(DASHBOARD_USER);
    await assert.rejects(
      () => claimEventsQueue(ninth),
      (error) =>
        error instanceof BrokerUnavailableError &&
        /the 8 queues a dashboard may use \(dashboard\.events\.0 to dashboard\.events\.7\) are held/
          .test(error.message),
    );
    await dashboards[3].close();
    assert.equal(
      await claimEventsQueue(ninth),
      "dashboard.events.3",
      "a freed queue is taken again",
    );
  } finally {
    await hub.shutdown();
  }
});

Deno.test("startBrokerWatch() leaves depths unknown where the broker refuses its passive checks, and watches on", async () => {
  const hub = new MemoryBroker();
  const worker = await startWorker(inProcessRunner(add), hub.connect("add"), { workerId: "add@1" });
  const inner = hub.connect(DASHBOARD_USER);
  let refused = 0;
  // What RabbitMQ 4.2.6 and later answer a user with no permission on the queue.
  const refusing = new Proxy(inner, {
    get(target, key) {
      if (key !== "inspectQueue") {
        // The connection's own methods use its private fields: call them on it.
        const value = Reflect.get(target, key, target);
        return typeof value === "function" ? value.bind(target) : value;
      }
      return (name: string) => {
        refused++;
        return Promise.reject(
          new BrokerUnavailableError(
            `Cannot inspect queue '${name}' as the broker refused access: ACCESS_REFUSED: grant the user permissions on it`,
          ),
        );
      };
    },
  });
  const watch = await startBrokerWatch(refusing, {
    functions: FUNCTIONS,
    pollMs: 20,
    pingMs: 20,
    onEvent: () => {},
    onChange: () => {},
  });
  try {
    await waitFor(() => watch.workers().length === 1 && refused >= 4, "pings, polls refused");
    assert.deepEqual(watch.queues(), [{
      function: "add",
      queue: "queue_add",
      user: "add",
      exists: false,
      messages: null,
      consumers: null,
      deadLetters: null,
    }]);
  } finally {
    await watch.stop();
    await worker.stop(0);
    await inner.close();
  }
});

Deno.test("startBrokerWatch() passes on the active scheduler's note from the scheduler's user only", async () => {
  const hub = new MemoryBroker();
  const notes: SchedulerNote[] = [];
  const watch = await startBrokerWatch(hub.connect(DASHBOARD_USER), {
    functions: FUNCTIONS,
    pollMs: 1000,
    pingMs: 1000,
    onEvent: () => {},
    onScheduler: (note) => notes.push(note),
    onChange: () => {},
  });
  try {
    const note = (scheduler: string) =>
      encodeSchedulerNote({ scheduler, since: "2026-11-29T06:00:00.000Z", functions: ["add"] });
    await hub.connect("dispatcher").publishToExchange(EVENTS_EXCHANGE, note("forged"));
    await hub.connect(SCHEDULER_USER).publishToExchange(EVENTS_EXCHANGE, note("scheduler-1"));
    await waitFor(() => notes.length === 1, "the scheduler's note");
    assert.deepEqual(notes, [{
      scheduler: "scheduler-1",
      since: "2026-11-29T06:00:00.000Z",
      functions: ["add"],
    }]);
  } finally {
    await watch.stop();
    await hub.shutdown();
  }
});
