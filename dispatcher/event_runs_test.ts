import assert from "node:assert/strict";
import { sampleEventOutcomes, sampleEvents } from "../tests/_report_fixtures.ts";
import { eventRecords, formatEventRecords } from "./event_runs.ts";

Deno.test("eventRecords() keeps each event's verdict, its reason, and every run reported", () => {
  const records = sampleEvents();
  assert.deepEqual(records.map((r) => r.label), [
    "demo.greet#1",
    "demo.greet#2",
    "demo.other",
    "demo.denied",
  ]);
  assert.deepEqual(records.map((r) => r.passed), [true, false, false, false]);
  assert.deepEqual(records.map((r) => r.problem), [
    null,
    "task_b expected to end in error, ended in success",
    "task_c expected to end in success, not reported within 500 ms",
    "Cannot emit 'demo.denied' as broker user 'dispatcher' may not",
  ]);
  assert.deepEqual(records.map((r) => r.id), ["ev-1", "ev-2", "ev-3", null]);
  const [greet, wrong, silent, denied] = records;
  assert.deepEqual(greet.expected_runs[1], {
    function: "task_b",
    expected_status: "success",
    status: "success",
    event_id: "ev-1-chained",
    worker: "task_b@one",
    passed: true,
    problem: null,
  });
  assert.deepEqual(greet.runs.map((r) => [r.function, r.event_id, r.status, r.error_type]), [
    ["task_a", "ev-1", "success", null],
    ["task_b", "ev-1-chained", "success", null],
  ]);
  assert.equal(greet.latency_ms, 40);
  assert.equal(greet.sent_at, "2026-01-01T12:00:00.000Z");
  assert.deepEqual(
    [wrong.expected_runs[0].expected_status, wrong.expected_runs[0].status],
    ["error", "success"],
  );
  assert.deepEqual([silent.expected_runs[0].status, silent.expected_runs[0].worker], [null, null]);
  assert.equal(denied.expected_runs[0].problem, "the event was not emitted");
  assert.equal(denied.mode, "structured");
  // A record survives a JSON round trip unchanged: it is the document's.
  assert.deepEqual(JSON.parse(JSON.stringify(records)), records);
});

Deno.test("formatEventRecords() says what the records say: each verdict, its reason, the count", () => {
  const records = sampleEvents();
  assert.deepEqual(formatEventRecords(records), [
    "Event demo.greet (ev-1): task_a expected to end in success, ended in success: passed",
    "Event demo.greet (ev-1): task_b expected to end in success, ended in success: passed",
    "Event demo.greet (ev-2): task_b expected to end in error, ended in success: FAILED",
    "Event demo.other (ev-3): task_c expected to end in success, not reported within 500 ms: FAILED",
    "Event demo.denied: FAILED: Cannot emit 'demo.denied' as broker user 'dispatcher' may not",
    "Events passed: 1/4",
  ]);
  // Every FAILED line gives the reason its record keeps.
  for (const record of records.filter((r) => !r.passed && r.id !== null)) {
    const lines = formatEventRecords([record]).filter((line) => line.endsWith(": FAILED"));
    assert.deepEqual(lines, [`Event ${record.type} (${record.id}): ${record.problem}: FAILED`]);
  }
  assert.deepEqual(formatEventRecords(eventRecords(sampleEventOutcomes().slice(0, 1))), [
    "Event demo.greet (ev-1): task_a expected to end in success, ended in success: passed",
    "Event demo.greet (ev-1): task_b expected to end in success, ended in success: passed",
    "Events passed: 1/1",
  ]);
});
