/**
 * What a run prints for people: the result of each task, with where and
 * when it ran, and a summary with counts, retries and timing statistics.
 * The live lines while tasks run are in `../live_status.ts`.
 *
 * @module
 */

import type { Painter } from "../cli/paint.ts";
import { escapeControls } from "../cli/terminal_text.ts";
import type { RunDocument, TaskRecord } from "./run_document.ts";

/** "task_a" → "Task A", as the original systems printed it. */
export function displayName(task: string): string {
  return task.split("_").map((word) => word.charAt(0).toUpperCase() + word.slice(1)).join(" ");
}

/** Milliseconds as seconds with three decimals: `0.102 s`. */
export function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(3)} s`;
}

/** A time of day in local time, to the millisecond: `21:28:56.041`. */
export function clockTime(time: Date | number | string): string {
  const date = new Date(time);
  const two = (n: number) => String(n).padStart(2, "0");
  return `${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())}.${
    String(date.getMilliseconds()).padStart(3, "0")
  }`;
}

/** A result or error as a function wrote it: hostile text, printed escaped. */
function show(value: unknown): string {
  return escapeControls(typeof value === "string" ? value : JSON.stringify(value) ?? String(value));
}

/**
 * The lines of one task in the summary: its result (or error, or timeout),
 * where and when it ran, and why it did not pass if it did not.
 */
function formatTaskResult(task: TaskRecord, paint: Painter): string[] {
  const where = [`queue ${task.queue}`, `task ${task.task_id}`];
  if (task.queue_wait_ms !== null) where.push(`waited ${seconds(task.queue_wait_ms)} in queue`);
  const at = task.finished_at ?? task.ended_at;
  where.push(`${task.finished_at ? "finished" : "gave up"} at ${clockTime(at)}`);
  const detail = paint.dim(`    ${where.join(", ")}`);
  if (task.status === "timeout") {
    const seen = task.worker ? `; last seen on ${show(task.worker)}, attempt ${task.attempts}` : "";
    return [
      paint.bad(`TIMEOUT ${task.label}: no reply within ${task.timeout_ms} ms`) +
      paint.dim(` (task ${task.task_id}${seen})`),
      detail,
    ];
  }
  const runs = paint.dim(
    `(${seconds(task.duration_ms ?? 0)}, attempts: ${task.attempts}, worker: ${show(task.worker)})`,
  );
  const head = task.status === "success"
    ? `Result from ${task.label}: ${show(task.result)}`
    : `Error from ${task.label}: ${show(task.error?.type)}: ${show(task.error?.message)}`;
  if (task.passed) return [`${paint.ok(head)} ${runs}`, detail];
  return [`${paint.bad(head)} ${runs}`, detail, `  ${paint.bad(`FAILED: ${show(task.problem)}`)}`];
}

/**
 * What became of the requests of calls that timed out: nobody waits for
 * them, and they are kept as dead letters, not dropped (docs/client.md,
 * "Big fan-outs").
 */
export function abandonedNote(timedOut: number): string {
  return `${timedOut} timed out: requests nobody waits for are dead-lettered as 'expired' once past their deadline (unless a worker finished them first), counted in each worker's /metrics as worker_tasks_total{status="expired"}; see them with deno task dlq`;
}

/** The summary printed after every task ended. */
export function formatSummary(run: RunDocument, paint: Painter): string[] {
  return [...summaryLines(run, paint)];
}

/** The lines of {@linkcode formatSummary}, one after another: a big run's are never all held. */
export function* summaryLines(
  run: RunDocument,
  paint: Painter,
): Generator<string, void, undefined> {
  const { summary } = run;
  yield paint.bold(
    `Successful: ${summary.successful}, failed: ${
      summary.errors + summary.timed_out
    } (${summary.errors} errors, ${summary.timed_out} timed out)`,
  );
  for (const task of run.tasks) yield* formatTaskResult(task, paint);
  const lines = [""];
  for (const [task, n] of Object.entries(summary.retries)) {
    lines.push(`${displayName(task)} retries: ${n}`);
  }
  lines.push(`Total retries: ${summary.total_retries}`);
  if (summary.average_ms !== null && summary.fastest && summary.slowest) {
    lines.push(
      `Execution time: average ${seconds(summary.average_ms)}, fastest ${
        seconds(summary.fastest.duration_ms)
      } (${summary.fastest.label}), slowest ${
        seconds(summary.slowest.duration_ms)
      } (${summary.slowest.label})`,
    );
  }
  lines.push(
    `Total wall time: ${seconds(summary.wall_ms)}; sum of task times: ${
      seconds(summary.sum_task_ms)
    } (${summary.speedup.toFixed(2)}x from running concurrently)`,
  );
  if (summary.timed_out > 0) lines.push(paint.dim(abandonedNote(summary.timed_out)));
  const verdict = `Passed: ${summary.passed}/${summary.total}`;
  if (summary.failed === 0) lines.push(paint.ok(paint.bold(verdict)));
  else {
    const timeouts = summary.timed_out > 0 ? `, ${summary.timed_out} timed out` : "";
    lines.push(paint.bad(paint.bold(`${verdict} (${summary.failed} failed${timeouts})`)));
  }
  yield* lines;
}
