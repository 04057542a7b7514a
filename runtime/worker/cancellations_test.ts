import assert from "node:assert/strict";
import { CancelledCalls } from "./cancellations.ts";

Deno.test("CancelledCalls keeps a cancellation for whoever may cancel the call, until its deadline", () => {
  let now = 1_000_000;
  const record = new CancelledCalls({ now: () => now });
  assert.equal(record.add("t", "dispatcher", now + 5_000), "new");
  assert.equal(record.add("t", "dispatcher", now + 5_000), "again");
  assert.equal(record.find("t", "dispatcher"), "dispatcher");
  assert.equal(record.find("t", "task_b"), undefined, "not a cancellation of task_b's call");
  // Another user's cancellation of the same id is kept beside it, not instead of it.
  assert.equal(record.add("t", "task_b", now + 5_000), "new");
  assert.equal(record.find("t", "task_b"), "task_b");
  assert.equal(record.find("t", "dispatcher"), "dispatcher");
  now += 5_001;
  assert.equal(record.find("t", "dispatcher"), undefined, "forgotten at the deadline");
  assert.equal(record.size, 0);
});

Deno.test("CancelledCalls never keeps one past the retention, nor more than its bound", () => {
  let now = 0;
  const record = new CancelledCalls({ now: () => now, maxEntries: 3, retentionMs: 1_000 });
  record.add("far", "operator", 1_000_000);
  now = 999;
  assert.equal(record.find("far", "anyone"), "operator");
  now = 1_000;
  assert.equal(record.find("far", "anyone"), undefined, "at most the retention");
  for (const id of ["a", "b", "c", "d"]) record.add(id, "operator");
  assert.equal(record.size, 3);
  assert.equal(record.find("a", "x"), undefined, "the oldest went first");
  assert.equal(record.find("d", "x"), "operator");
  // One already past its time is not kept at all.
  assert.equal(record.add("late", "operator", now - 1), "new");
  assert.equal(record.find("late", "x"), undefined);
});
