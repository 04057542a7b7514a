/**
 * The client calling a function served by Celery workers, on the in-memory
 * broker, against a stand-in that answers as Celery 5's worker does with the
 * rpc:// backend and `task_track_started`. tests/celery_test.ts runs a real
 * Celery worker.
 */

import assert from "node:assert/strict";
import { type Broker, type Delivery, MemoryBroker } from "../core/broker/mod.ts";
import { parseCeleryRequest, type TaskProgress } from "../core/contract/mod.ts";
import { TaskFailedError } from "./errors.ts";
import type { FunctionRoute } from "../core/registry.ts";
import { TaskClient } from "./task_client.ts";

const encoder = new TextEncoder();
const ROUTE: FunctionRoute = {
  queue: "queue_c",
  user: "task_c",
  protocol: "celery",
  celeryName: "tasks.task_c",
};

/** What the stand-in does with a request: the messages it sends back, in order. */
type Behaviour = (
  request: { id: string; payload: Record<string, unknown>; retries: number },
) => unknown[];

/** A Celery worker's result messages for one task: STARTED, then `final`. */
function results(id: string, final: Record<string, unknown>, extra: unknown[] = []): unknown[] {
  return [
    { task_id: id, status: "STARTED", result: { pid: 7, hostname: "celery@box" } },
    ...extra,
    { task_id: id, traceback: null, children: [], ...final },
  ];
}

/** Consumes `queue_c` as `user` and answers each Celery request as `behaviour` says. */
async function celeryStandIn(broker: Broker, behaviour: Behaviour, seen: Delivery[]) {
  await broker.declareQueue("queue_c", { durable: true });
  await broker.consume("queue_c", async (delivery) => {
    seen.push(delivery);
    const parsed = parseCeleryRequest(delivery, { names: ["tasks.task_c"], maxBytes: 1 << 20 });
    assert.ok(parsed.ok, JSON.stringify(parsed));
    for (const body of behaviour(parsed.value)) {
      await broker.publish(delivery.properties.replyTo!, {
        body: encoder.encode(JSON.stringify(body)),
        properties: {
          contentType: "application/json",
          correlationId: delivery.properties.correlationId,
        },
      });
    }
    broker.ack(delivery);
  }, { prefetch: 1 });
}

/** A fake task_c: succeeds unless `fail_attempts` asks otherwise, as examples/celery/worker_tasks.py. */
const TASK_C: Behaviour = ({ id, payload, retries }) => {
  const attempt = retries + 1;
  return attempt <= Number(payload.fail_attempts ?? 0)
    ? results(id, {
      status: "FAILURE",
      result: {
        exc_type: "SimulatedFailure",
        exc_message: [`Failing attempt ${attempt}`],
        exc_module: "worker_tasks",
      },
    })
    : results(id, { status: "SUCCESS", result: "Hello from Task C" });
};

async function setup(behaviour: Behaviour, workerUser = "task_c") {
  const hub = new MemoryBroker();
  const seen: Delivery[] = [];
  await celeryStandIn(hub.connect(workerUser), behaviour, seen);
  const client = await TaskClient.open(hub.connect("dispatcher"), {
    functions: new Map([["task_c", ROUTE]]),
    timeoutMs: 2000,
  });
  return {
    client,
    seen,
    async close() {
      await client.close();
      await hub.shutdown();
    },
  };
}

Deno.test("TaskClient calls a Celery function with a protocol 2 request and reads its rpc:// result", async () => {
  const t = await setup(TASK_C);
  try {
    const progress: TaskProgress[] = [];
    const outcome = await t.client.request("task_c", { work_ms: 5, args: [1] }, {
      taskId: "c-1",
      onProgress: (event) => progress.push(event),
    });
    assert.equal(outcome.kind, "reply");
    if (outcome.kind !== "reply") return;
    const { reply } = outcome;
    assert.equal(reply.status, "success");
    assert.equal(reply.result, "Hello from Task C");
    assert.equal(reply.task, "task_c");
    assert.equal(reply.task_id, "c-1");
    assert.equal(reply.queue, "queue_c");
    assert.equal(reply.worker, "celery@box", "named by its STARTED result");
    assert.equal(reply.attempts, 1);
    assert.ok(reply.duration_ms >= 0);
    assert.deepEqual(progress.map((p) => [p.event, p.worker, p.attempt]), [
      ["started", "celery@box", 1],
    ]);
    const [request] = t.seen;
    assert.equal(request.properties.headers?.task, "tasks.task_c");
    assert.equal(request.properties.headers?.id, "c-1");
    assert.equal(request.properties.correlationId, "c-1");
    assert.equal(request.properties.userId, "dispatcher");
    assert.ok(request.properties.headers?.expires, "the call's deadline");
    assert.deepEqual(JSON.parse(new TextDecoder().decode(request.body)).slice(0, 2), [
      [1],
      { work_ms: 5 },
    ]);
  } finally {
    await t.close();
  }
});

Deno.test("TaskClient retries a failing Celery task itself, as often as the call says", async () => {
  const t = await setup(TASK_C);
  try {
    const progress: TaskProgress[] = [];
    const outcome = await t.client.request("task_c", { fail_attempts: 2 }, {
      retry: { max_retries: 3, base_delay_ms: 5 },
      onProgress: (event) => progress.push(event),
    });
    assert.equal(outcome.kind, "reply");
    if (outcome.kind !== "reply") return;
    assert.equal(outcome.reply.status, "success");
    assert.equal(outcome.reply.attempts, 3);
    assert.deepEqual(t.seen.map((d) => d.properties.headers?.retries), [0, 1, 2]);
    assert.equal(new Set(t.seen.map((d) => d.properties.headers?.id)).size, 1, "one task id");
    const retries = progress.filter((p) => p.event === "retry");
    assert.deepEqual(retries.map((p) => [p.attempt, p.error?.type, p.max_retries]), [
      [1, "SimulatedFailure", 3],
      [2, "SimulatedFailure", 3],
    ]);
    // Without retries in the call, a failure is final.
    const error = await t.client.call("task_c", { fail_attempts: 1 }).catch((e) => e);
    assert.ok(error instanceof TaskFailedError);
    assert.equal(error.errorType, "SimulatedFailure");
    assert.equal(error.errorMessage, "Failing attempt 1");
    assert.equal(error.attempts, 1);
  } finally {
    await t.close();
  }
});

Deno.test("TaskClient counts Celery's own RETRY results as attempts and retries nothing that cannot mend", async () => {
  const t = await setup(({ id, payload }) =>
    payload.refuse
      ? results(id, {
        status: "FAILURE",
        result: { exc_type: "Unauthenticated", exc_message: ["not you"], exc_module: "w" },
      })
      : results(id, { status: "SUCCESS", result: 42 }, [
        { task_id: id, status: "RETRY", result: { exc_type: "Retry", exc_message: ["in 1s"] } },
        { task_id: id, status: "STARTED", result: { pid: 8, hostname: "celery@other" } },
      ])
  );
  try {
    const outcome = await t.client.request("task_c", {});
    assert.equal(outcome.kind, "reply");
    if (outcome.kind !== "reply") return;
    assert.equal(outcome.reply.result, 42);
    assert.equal(outcome.reply.attempts, 2, "Celery retried once itself");
    assert.equal(outcome.reply.worker, "celery@other");
    const refused = await t.client.request("task_c", { refuse: true }, {
      retry: { max_retries: 3, base_delay_ms: 1 },
    });
    assert.equal(refused.kind, "reply");
    if (refused.kind !== "reply") return;
    assert.equal(refused.reply.error?.type, "Unauthenticated");
    assert.equal(t.seen.length, 2, "an Unauthenticated failure is not sent again");
  } finally {
    await t.close();
  }
});

Deno.test("TaskClient believes a Celery result only from the function's broker user", async () => {
  const t = await setup(TASK_C, "task_a");
  try {
    const outcome = await t.client.request("task_c", {}, { timeoutMs: 300 });
    assert.equal(outcome.kind, "timeout");
    assert.equal(t.client.ignored.unexpectedSender, 2, "STARTED and SUCCESS from task_a");
  } finally {
    await t.close();
  }
});
