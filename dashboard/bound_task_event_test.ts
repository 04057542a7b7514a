import assert from "node:assert/strict";
import type { TaskEvent } from "../core/contract/mod.ts";
import { boundTaskEvent, MAX_TASK_ID_CHARS } from "./bound_task_event.ts";

const BASE: TaskEvent = {
  kind: "task-failed",
  function: "task_a",
  queue: "queue_a",
  task_id: "t1",
  at: "2026-11-29T12:00:00.000Z",
};

Deno.test("boundTaskEvent() keeps the contract's fields only, each bounded", () => {
  const long = "\u0001".repeat(60_000);
  const event = boundTaskEvent({
    ...BASE,
    queue: long,
    at: long,
    attempt: 2,
    worker: long,
    duration_ms: 12.5,
    error_type: long,
    error: long,
    reason: long,
    delay_ms: Infinity,
    trace_id: "0af7651916cd43dd8448eb211c80319c",
    extra: long,
    nested: { deep: long },
  } as unknown as TaskEvent)!;
  assert.deepEqual(Object.keys(event).sort(), [
    "at",
    "attempt",
    "duration_ms",
    "error",
    "error_type",
    "function",
    "kind",
    "queue",
    "reason",
    "task_id",
    "trace_id",
    "worker",
  ]);
  assert.ok(JSON.stringify(event).length < 6 * 1000, `${JSON.stringify(event).length} bytes`);
  assert.ok(event.error!.length <= 512 && event.error_type!.length <= 64);
  assert.ok(event.worker!.length <= 128 && event.reason!.length <= 32);
  assert.ok(event.queue.length <= 63 && event.at.length <= 40);
  assert.equal(event.trace_id, "0af7651916cd43dd8448eb211c80319c");
  assert.equal(event.attempt, 2);
  assert.equal(event.delay_ms, undefined, "not a finite number");
});

Deno.test("boundTaskEvent() drops an event whose task id is too long, and a trace id that is not one", () => {
  assert.equal(boundTaskEvent({ ...BASE, task_id: "x".repeat(MAX_TASK_ID_CHARS + 1) }), undefined);
  assert.equal(boundTaskEvent({ ...BASE, task_id: 7 as unknown as string }), undefined);
  assert.equal(
    boundTaskEvent({ ...BASE, task_id: "x".repeat(MAX_TASK_ID_CHARS) })?.task_id?.length,
    255,
  );
  assert.equal(boundTaskEvent({ ...BASE, task_id: null })?.task_id, null);
  for (const trace of ["A".repeat(32), "0af7", 42, "0af7651916cd43dd8448eb211c80319c\n"]) {
    const event = boundTaskEvent({ ...BASE, trace_id: trace as string })!;
    assert.equal("trace_id" in event, false, String(trace));
  }
});
