import assert from "node:assert/strict";
import { at, outcome, sampleEvents, sampleRun, spec, T0 } from "../../tests/_report_fixtures.ts";
import {
  attemptsOf,
  documentLines,
  RUN_DOCUMENT_SCHEMA,
  runDocumentOf,
  taskRecord,
} from "./run_document.ts";

Deno.test("taskRecord() times the queue wait from sending to the first attempt", () => {
  const record = taskRecord(outcome({
    spec: spec("task_a"),
    sent: 0,
    ended: 112,
    attempts: [{ start: 10, end: 110, worker: "task_a@one" }],
  }));
  assert.equal(record.sent_at, at(0));
  assert.equal(record.started_at, at(10));
  assert.equal(record.finished_at, at(110));
  assert.equal(record.ended_at, at(112));
  assert.equal(record.queue_wait_ms, 10);
  assert.equal(record.duration_ms, 100);
  assert.equal(record.latency_ms, 112);
  assert.equal(record.worker, "task_a@one");
});

Deno.test("attemptsOf() rebuilds every attempt from progress events and the reply", () => {
  const attempts = attemptsOf(outcome({
    spec: spec("task_b"),
    sent: 0,
    ended: 700,
    attempts: [
      { start: 5, end: 50, worker: "task_b@one" },
      { start: 200, end: 240, worker: "task_b@two" },
      { start: 500, end: 698, worker: "task_b@one" },
    ],
  }));
  assert.deepEqual(
    attempts.map((a) => [a.attempt, a.worker, a.started_at, a.ended_at, a.outcome]),
    [
      [1, "task_b@one", at(5), at(50), "retry"],
      [2, "task_b@two", at(200), at(240), "retry"],
      [3, "task_b@one", at(500), at(698), "success"],
    ],
  );
  assert.equal(attempts[0].error?.type, "SimulatedFailure");
});

Deno.test("taskRecord() of a timeout keeps the attempt it saw, unfinished", () => {
  const record = taskRecord(outcome({
    spec: spec("task_c"),
    sent: 3,
    ended: 903,
    attempts: [{ start: 20, end: 0, worker: "task_c@one" }],
    status: "timeout",
  }));
  assert.equal(record.status, "timeout");
  assert.equal(record.finished_at, null);
  assert.equal(record.duration_ms, null);
  assert.equal(record.worker, "task_c@one");
  assert.equal(record.attempts, 1);
  assert.deepEqual(record.timeline.map((a) => [a.outcome, a.ended_at]), [["unfinished", null]]);
});

Deno.test("buildRunDocument() counts outcomes and computes the timing statistics", () => {
  const run = sampleRun();
  assert.equal(run.schema, RUN_DOCUMENT_SCHEMA);
  assert.equal(run.started_at, new Date(T0).toISOString());
  assert.equal(run.exit_code, 1);
  const { summary } = run;
  assert.equal(summary.total, 4);
  assert.equal(summary.passed, 2);
  assert.equal(summary.failed, 2);
  assert.equal(summary.successful, 2);
  assert.equal(summary.errors, 1);
  assert.equal(summary.timed_out, 1);
  assert.deepEqual(summary.retries, { task_a: 0, task_b: 2, task_c: 0 });
  assert.equal(summary.total_retries, 2);
  // Execution times of the tasks that replied: 100, 198 and 38 ms.
  assert.equal(summary.sum_task_ms, 336);
  assert.equal(summary.average_ms, 112);
  assert.deepEqual(summary.fastest, { label: "task_a#2", duration_ms: 38 });
  assert.deepEqual(summary.slowest, { label: "task_b", duration_ms: 198 });
  assert.equal(summary.wall_ms, 903);
  assert.equal(summary.speedup, 0.37);
  // The document survives a JSON round trip unchanged.
  assert.deepEqual(JSON.parse(JSON.stringify(run)), run);
});

Deno.test("documentLines() joins with newlines to JSON.stringify(document, null, 2), a piece per task", () => {
  const run = sampleRun();
  const lines = [...documentLines(run)];
  assert.equal(lines.join("\n"), JSON.stringify(run, null, 2));
  // The fields before the tasks, each task, the end.
  assert.equal(lines.length, run.tasks.length + 2);
  const empty = { ...run, tasks: [] };
  assert.equal([...documentLines(empty)].join("\n"), JSON.stringify(empty, null, 2));
});

Deno.test("runDocumentOf() keeps the events before the tasks and counts them in the exit code as the terminal does", () => {
  const context = {
    config: { name: "c", file: "c.yml" },
    scenario: { name: "s", description: "" },
    broker: "memory://test",
    workers: [],
    startedWallMs: T0,
    finishedWallMs: T0 + 500,
    wallMs: 112,
  };
  const passing = [
    taskRecord(outcome({
      spec: spec("task_a"),
      sent: 0,
      ended: 112,
      attempts: [{ start: 10, end: 110, worker: "task_a@one" }],
    })),
  ];
  const events = sampleEvents();
  // Every task passed, three events did not: the run fails, as the terminal's exit code says.
  const failed = runDocumentOf(passing, context, events);
  assert.equal(failed.exit_code, 1);
  assert.deepEqual(failed.summary.events, { total: 4, passed: 1, failed: 3 });
  assert.equal(failed.summary.failed, 0, "the task figures stay the tasks'");
  assert.deepEqual(failed.events, events);
  assert.deepEqual(Object.keys(failed).slice(-2), ["events", "tasks"]);
  const passed = runDocumentOf(passing, context, events.slice(0, 1));
  assert.equal(passed.exit_code, 0);
  assert.deepEqual(passed.summary.events, { total: 1, passed: 1, failed: 0 });
  // A scenario of events alone.
  const alone = runDocumentOf([], { ...context, wallMs: 0 }, events.slice(1, 2));
  assert.equal(alone.exit_code, 1);
  assert.equal(alone.summary.total, 0);
  assert.equal([...documentLines(alone)].join("\n"), JSON.stringify(alone, null, 2));
  assert.equal([...documentLines(failed)].join("\n"), JSON.stringify(failed, null, 2));
  assert.deepEqual(runDocumentOf(passing, context).events, []);
});
