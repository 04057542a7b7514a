import assert from "node:assert/strict";
import { parsePrometheus } from "../../tests/_prometheus.ts";
import { DURATION_BUCKETS_S, WorkerMetrics } from "./observe.ts";

const LABELS = { function: "task_a", queue: "queue_a" };

Deno.test("WorkerMetrics.render() exposes counts, a cumulative histogram and gauges", () => {
  const metrics = new WorkerMetrics(new Date("2026-01-01T00:00:00Z"));
  Object.assign(metrics.stats, {
    received: 7,
    succeeded: 3,
    failed: 1,
    retried: 2,
    rejected: 1,
    untriggered: 4,
    inFlight: 1,
  });
  for (const ms of [4, 40, 400]) metrics.observe("success", ms);
  metrics.observe("error", 2);
  const exposition = parsePrometheus(metrics.render(LABELS, true));
  const value = (name: string, labels: Record<string, string> = {}) =>
    exposition.value(name, { ...LABELS, ...labels });

  assert.equal(value("worker_tasks_total", { status: "success" }), 3);
  assert.equal(value("worker_tasks_total", { status: "error" }), 1);
  assert.equal(value("worker_tasks_total", { status: "rejected" }), 1);
  assert.equal(value("worker_tasks_total", { status: "untriggered" }), 4);
  assert.equal(value("worker_task_retries_total"), 2);
  assert.equal(value("worker_deliveries_total"), 7);
  assert.equal(value("worker_tasks_in_flight"), 1);
  assert.equal(value("worker_consuming"), 1);
  assert.equal(value("worker_start_time_seconds"), 1767225600);

  const bucket = (le: string) =>
    value("worker_task_duration_seconds_bucket", { status: "success", le });
  assert.equal(bucket("0.005"), 1);
  assert.equal(bucket("0.05"), 2);
  assert.equal(bucket("0.5"), 3);
  assert.equal(bucket("+Inf"), 3);
  assert.equal(value("worker_task_duration_seconds_count", { status: "success" }), 3);
  assert.ok(
    Math.abs(value("worker_task_duration_seconds_sum", { status: "success" }) - 0.444) < 1e-9,
  );
  assert.equal(value("worker_task_duration_seconds_count", { status: "error" }), 1);
  const buckets = exposition.samples.filter((s) =>
    s.name === "worker_task_duration_seconds_bucket" && s.labels.status === "success"
  );
  assert.equal(buckets.length, DURATION_BUCKETS_S.length + 1);
  for (let i = 1; i < buckets.length; i++) {
    assert.ok(buckets[i].value >= buckets[i - 1].value, "buckets are cumulative");
  }
  assert.equal(exposition.types.get("worker_task_duration_seconds"), "histogram");
  assert.equal(exposition.types.get("worker_tasks_total"), "counter");
});

Deno.test("WorkerMetrics.render() escapes label values and reports not consuming", () => {
  const text = new WorkerMetrics().render({ function: 'odd"name', queue: "a\\b" }, false);
  const exposition = parsePrometheus(text);
  assert.equal(exposition.value("worker_consuming", { function: 'odd"name', queue: "a\\b" }), 0);
});
