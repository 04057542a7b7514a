import assert from "node:assert/strict";
import type { TaskEvent } from "../core/contract/mod.ts";
import { BUCKET_MS, BUCKETS, MAX_OPEN_TASKS, quantile, TaskStats } from "./task_stats.ts";

const NOW = Date.parse("2026-11-29T12:00:05Z");

function event(kind: TaskEvent["kind"], id: string, offsetMs: number, extra = {}): TaskEvent {
  return {
    kind,
    function: "task_a",
    queue: "queue_a",
    task_id: id,
    at: new Date(NOW + offsetMs).toISOString(),
    ...extra,
  };
}

Deno.test("quantile() takes the nearest rank, and null of nothing", () => {
  assert.equal(quantile([], 0.5), null);
  assert.equal(quantile([5, 1, 3], 0.5), 3);
  assert.equal(quantile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.95), 10);
  assert.equal(quantile([1, 2, 3, 4], 0.5), 2);
});

Deno.test("TaskStats counts finished tasks per minute, run times and sent-to-end latency", () => {
  const stats = new TaskStats();
  stats.add(event("task-sent", "t1", -3000), NOW);
  stats.add(event("task-started", "t1", -2900), NOW);
  stats.add(event("task-retried", "t1", -2800, { duration_ms: 50 }), NOW);
  stats.add(event("task-succeeded", "t1", -2000, { duration_ms: 100 }), NOW);
  stats.add(event("task-failed", "t2", -1000, { duration_ms: 300, reason: "exhausted" }), NOW);
  const figures = stats.figures("task_a", NOW);
  assert.equal(figures.succeeded, 1);
  assert.equal(figures.failed, 1);
  assert.equal(figures.retried, 1);
  assert.equal(figures.sent, 1);
  assert.equal(figures.perSecond, Math.round((2 / 60) * 100) / 100);
  assert.equal(figures.runP50, 100);
  assert.equal(figures.runP95, 300);
  assert.equal(figures.endToEndP50, 1000, "t1: sent 3 s before the end, ended 2 s before");
  assert.equal(figures.series.length, BUCKETS);
  assert.equal(figures.series.at(-1), 2);
  assert.equal(figures.failedSeries.at(-1), 1);
  assert.deepEqual(stats.figures("task_b", NOW).series, new Array(BUCKETS).fill(0));
});

Deno.test("TaskStats forgets what is older than its window, and distrusts far-off clocks", () => {
  const stats = new TaskStats();
  stats.add(event("task-succeeded", "old", 0, { duration_ms: 10 }), NOW);
  const later = NOW + BUCKETS * BUCKET_MS;
  assert.equal(stats.figures("task_a", later).series.reduce((a, b) => a + b), 0);
  assert.equal(stats.figures("task_a", later).runP50, null);
  // An event a day ahead counts now, not in a bucket nobody draws.
  stats.add(event("task-succeeded", "future", 86_400_000, { duration_ms: 7 }), later);
  assert.equal(stats.figures("task_a", later).series.at(-1), 1);
});

Deno.test("TaskStats keeps at most MAX_OPEN_TASKS sent times, and new tasks count at once after a flood", () => {
  const stats = new TaskStats();
  for (let i = 0; i < MAX_OPEN_TASKS + 5_000; i++) {
    stats.add(event("task-sent", `never-${i}`, 0), NOW);
  }
  assert.equal(stats.openTasks, MAX_OPEN_TASKS);
  stats.add(event("task-sent", "real", 0), NOW);
  stats.add(event("task-succeeded", "real", 250, { duration_ms: 200 }), NOW + 250);
  assert.equal(stats.figures("task_a", NOW + 250).endToEndP50, 250, "the flood keeps nobody out");
  assert.equal(stats.openTasks, MAX_OPEN_TASKS - 1, "the oldest went, the finished one too");
});

Deno.test("TaskStats forgets sent times of tasks not finished within the window, so the figures recover", () => {
  const stats = new TaskStats();
  for (let i = 0; i < MAX_OPEN_TASKS; i++) stats.add(event("task-sent", `never-${i}`, 0), NOW);
  assert.equal(stats.openTasks, MAX_OPEN_TASKS);
  const later = NOW + BUCKETS * BUCKET_MS + 1;
  stats.add(event("task-sent", "late", BUCKETS * BUCKET_MS + 1), later);
  assert.equal(stats.openTasks, 1, "only the new one is left");
  // An end seen after the window for a send before it gives no end-to-end time.
  const stale = new TaskStats();
  stale.add(event("task-sent", "slow", 0), NOW);
  stale.add(event("task-succeeded", "slow", 0, { duration_ms: 1 }), later);
  assert.equal(stale.figures("task_a", later).endToEndP50, null);
});

Deno.test("TaskStats counts cancelled calls, queued or running, among the failed", () => {
  const stats = new TaskStats();
  stats.add(event("task-rejected", "q1", -1000, { reason: "cancelled" }), NOW);
  stats.add(event("task-failed", "r1", -900, { duration_ms: 20, reason: "cancelled" }), NOW);
  stats.add(event("task-failed", "e1", -800, { duration_ms: 20, reason: "exhausted" }), NOW);
  const figures = stats.figures("task_a", NOW);
  assert.equal(figures.cancelled, 2);
  assert.equal(figures.failed, 3);
});
