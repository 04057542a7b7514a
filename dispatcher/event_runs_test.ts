import assert from "node:assert/strict";
import { MemoryBroker } from "../core/broker/mod.ts";
import { CLOUD_EVENTS_EXCHANGE, encodeReply } from "../core/contract/mod.ts";
import { eventSpec, sampleEventOutcomes, sampleEvents } from "../tests/_report_fixtures.ts";
import { eventRecords, formatEventRecords, runScenarioEvents } from "./event_runs.ts";

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

Deno.test("runScenarioEvents() keeps each run reported, and prints a worker's text escaped", async () => {
  const hub = new MemoryBroker();
  const fn = hub.connect("task_a");
  const hostile = "task_a@\u001b]0;PWNED\u0007\u001b[2J";
  await fn.declareExchange(CLOUD_EVENTS_EXCHANGE, "topic");
  await fn.declareQueue("queue_a", { durable: true });
  await fn.bindQueue("queue_a", CLOUD_EVENTS_EXCHANGE, "demo.greet");
  // A worker of task_a that reports each run under a name made to drive a terminal.
  const consumer = await fn.consume("queue_a", (delivery) => {
    fn.ack(delivery);
    const at = new Date().toISOString();
    fn.publish(
      delivery.properties.replyTo!,
      encodeReply({
        task_id: delivery.properties.messageId ?? null,
        task: "task_a",
        status: "error",
        result: null,
        error: { type: "Boom\u001b[31m", message: "it broke" },
        worker: hostile,
        queue: "queue_a",
        attempts: 1,
        started_at: at,
        finished_at: at,
        duration_ms: 3,
      }, delivery.properties.correlationId),
    ).catch(() => {});
  }, { prefetch: 1 });
  const lines: string[] = [];
  try {
    const outcomes = await runScenarioEvents(
      hub.connect("dispatcher"),
      [eventSpec("demo.greet", ["task_a:error"], 5000)],
      {
        routes: new Map([["task_a", { queue: "queue_a", user: "task_a" }]]),
        say: (l) => lines.push(l),
      },
    );
    const [record] = eventRecords(outcomes);
    assert.equal(record.passed, true, lines.join("\n"));
    assert.deepEqual(record.runs.map((r) => [r.function, r.status, r.worker, r.event_id]), [
      ["task_a", "error", hostile, record.id],
    ]);
    const ran = lines.find((line) => line.startsWith("RAN"));
    assert.ok(ran, lines.join("\n"));
    assert.ok(!ran.includes("\u001b") && !ran.includes("\u0007"), ran);
    assert.match(
      ran,
      /on task_a@\\u001b\]0;PWNED\\u0007\\u001b\[2J in 0\.003 s \(Boom\\u001b\[31m\)$/,
    );
  } finally {
    await consumer.cancel();
    await hub.shutdown();
  }
});
