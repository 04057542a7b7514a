import assert from "node:assert/strict";
import type { TaskReply } from "../core/contract/mod.ts";
import { MemoryBroker } from "../core/broker/mod.ts";
import { defineFunction } from "../runtime/define_function.ts";
import { inProcessRunner } from "../runtime/handler_runner.ts";
import { startWorker } from "../runtime/worker/consumer.ts";
import { TaskClient } from "../client/task_client.ts";
import { dispatchAll, judge } from "./dispatch_all.ts";
import type { Expectation, TaskSpec } from "./config/load_config.ts";
import type { CallOutcome } from "../client/mod.ts";

function spec(expect: Expectation, timeoutMs = 500): TaskSpec {
  return {
    label: "task_a#2",
    task: "task_a",
    queue: "queue_a",
    payload: { work_ms: 1 },
    timeoutMs,
    retry: {},
    expect,
  };
}

function replied(overrides: Partial<TaskReply> = {}): CallOutcome {
  return {
    kind: "reply",
    taskId: "id-1",
    sentAt: 1000,
    endedAt: 1250,
    sentWallMs: 1_700_000_000_000,
    endedWallMs: 1_700_000_000_250,
    reply: {
      task_id: "id-1",
      task: "task_a",
      status: "success",
      result: "Hello from Task A",
      error: null,
      worker: "w1",
      queue: "queue_a",
      attempts: 1,
      started_at: "2024-01-01T00:00:00.000Z",
      finished_at: "2024-01-01T00:00:00.100Z",
      duration_ms: 100,
      ...overrides,
    },
  };
}

function failed(type: string, message = "it broke"): CallOutcome {
  return replied({ status: "error", result: null, error: { type, message } });
}

Deno.test("judge() passes a success whose result equals the expected one", () => {
  const task = spec({ status: "success", result: "Hello from Task A" });
  const outcome = replied();
  const judged = judge(task, outcome);
  assert.equal(judged.passed, true);
  assert.equal(judged.problem, undefined);
  assert.equal(judged.status, "success");
  assert.equal(judged.spec, task);
  assert.equal(judged.taskId, "id-1");
  assert.equal(judged.sentAt, 1000);
  assert.equal(judged.latencyMs, 250);
  assert.ok(outcome.kind === "reply");
  assert.equal(judged.reply, outcome.reply);
});

Deno.test("judge() passes any result when none is expected", () => {
  const judged = judge(spec({ status: "success" }), replied({ result: { anything: [1] } }));
  assert.equal(judged.passed, true);
});

Deno.test("judge() passes an expected error of the expected type", () => {
  const judged = judge(
    spec({ status: "error", errorType: "SimulatedFailure" }),
    failed("SimulatedFailure"),
  );
  assert.equal(judged.passed, true);
  assert.equal(judged.status, "error");
  assert.equal(judged.problem, undefined);
});

Deno.test("judge() passes an expected error of any type when none is named", () => {
  assert.equal(judge(spec({ status: "error" }), failed("Whatever")).passed, true);
});

Deno.test("judge() fails an error reply when success was expected", () => {
  const judged = judge(
    spec({ status: "success" }),
    failed("SimulatedFailure", "Failing attempt 1"),
  );
  assert.equal(judged.passed, false);
  assert.equal(judged.status, "error");
  assert.equal(judged.problem, "expected success, got SimulatedFailure: Failing attempt 1");
});

Deno.test("judge() fails a success reply when an error was expected", () => {
  const judged = judge(spec({ status: "error", errorType: "Boom" }), replied({ result: [1, "a"] }));
  assert.equal(judged.passed, false);
  assert.equal(judged.status, "success");
  assert.equal(judged.problem, 'expected an error, got success with result [1,"a"]');
});

Deno.test("judge() compares results with deep, strict equality", () => {
  const expected = { greeting: "hi", list: [1, { n: 2 }] };
  const task = spec({ status: "success", result: expected });
  assert.equal(
    judge(task, replied({ result: { list: [1, { n: 2 }], greeting: "hi" } })).passed,
    true,
  );

  const different = judge(task, replied({ result: { greeting: "hi", list: [1, { n: "2" }] } }));
  assert.equal(different.passed, false);
  assert.equal(
    different.problem,
    'expected result {"greeting":"hi","list":[1,{"n":2}]}, got {"greeting":"hi","list":[1,{"n":"2"}]}',
  );
  const extra = judge(task, replied({ result: { ...expected, more: true } }));
  assert.equal(extra.passed, false);
});

Deno.test("judge() tells an expected null result from a missing one", () => {
  const task = spec({ status: "success", result: null });
  assert.equal(judge(task, replied({ result: null })).passed, true);
  const judged = judge(task, replied({ result: "x" }));
  assert.equal(judged.passed, false);
  assert.equal(judged.problem, 'expected result null, got "x"');
});

Deno.test("judge() fails an error of another type than expected", () => {
  const judged = judge(spec({ status: "error", errorType: "SimulatedFailure" }), failed("Timeout"));
  assert.equal(judged.passed, false);
  assert.equal(judged.problem, "expected error type SimulatedFailure, got Timeout");
});

Deno.test("judge() fails a timeout with a problem starting with TIMEOUT", () => {
  const judged = judge(spec({ status: "success" }, 750), {
    kind: "timeout",
    taskId: "id-9",
    sentAt: 10,
    endedAt: 760,
    sentWallMs: 1_700_000_000_010,
    endedWallMs: 1_700_000_000_760,
  });
  assert.equal(judged.passed, false);
  assert.equal(judged.status, "timeout");
  assert.equal(judged.reply, undefined);
  assert.equal(judged.taskId, "id-9");
  assert.equal(judged.latencyMs, 750);
  assert.ok(judged.problem?.startsWith("TIMEOUT: no reply within 750 ms"), judged.problem);
  assert.match(judged.problem!, /raise timeout_ms/);
});

Deno.test("judge() fails a timeout even when an error was expected", () => {
  const judged = judge(spec({ status: "error" }), {
    kind: "timeout",
    taskId: "id-9",
    sentAt: 0,
    endedAt: 500,
    sentWallMs: 1_700_000_000_000,
    endedWallMs: 1_700_000_000_500,
  });
  assert.equal(judged.passed, false);
  assert.match(judged.problem!, /^TIMEOUT/);
});

Deno.test("dispatchAll() with a window keeps at most that many tasks in flight and returns outcomes in task order", async () => {
  const hub = new MemoryBroker();
  const fn = defineFunction({
    name: "task_a",
    queue: "queue_a",
    handler: (payload) => payload.n,
  });
  const worker = await startWorker(inProcessRunner(fn), hub.connect("task_a"), {
    workerId: "task_a@1",
    concurrency: 64,
  });
  const client = await TaskClient.open(hub.connect("dispatcher"), {
    functions: new Map([["task_a", { queue: "queue_a", user: "task_a" }]]),
  });
  try {
    const tasks = Array.from({ length: 500 }, (_, n): TaskSpec => ({
      ...spec({ status: "success", result: n }),
      label: `task_a#${n + 1}`,
      payload: { n },
    }));
    let peak = 0;
    const outcomes = await dispatchAll(client, tasks, {
      onSent: () => peak = Math.max(peak, client.pending),
    }, { window: 7 });
    assert.ok(peak <= 7, `at most the window in flight (${peak})`);
    assert.equal(outcomes.length, 500);
    outcomes.forEach((outcome, n) => {
      assert.equal(outcome.spec, tasks[n], "in task order");
      assert.equal(outcome.passed, true, outcome.problem);
    });
  } finally {
    await client.close();
    await worker.stop(0);
    await hub.shutdown();
  }
});
