import assert from "node:assert/strict";
import { at, outcome, sampleRun, spec, T0 } from "../../tests/_report_fixtures.ts";
import { attemptsOf, documentLines, RUN_DOCUMENT_SCHEMA, taskRecord } from "./run_document.ts";

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
