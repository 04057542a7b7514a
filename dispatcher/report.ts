/**
 * What a run prints for people: a line per task as it ends and a summary
 * with retries, timing and the gain from running tasks concurrently.
 *
 * @module
 */

import { styleText } from "node:util";
import type { TaskOutcome } from "./dispatch_all.ts";

/** Colours output, or leaves it plain. */
export interface Painter {
  ok(text: string): string;
  bad(text: string): string;
  warn(text: string): string;
  dim(text: string): string;
  bold(text: string): string;
}

/** Whether to colour: only on a terminal, and never when `NO_COLOR` is set. */
export function shouldColor(isTerminal: boolean, noColor: string | undefined): boolean {
  return isTerminal && (noColor === undefined || noColor === "");
}

/** A {@linkcode Painter} that colours when `color` is true. */
export function createPainter(color: boolean): Painter {
  const paint = (format: Parameters<typeof styleText>[0]) => (text: string) =>
    color ? styleText(format, text, { validateStream: false }) : text;
  return {
    ok: paint("green"),
    bad: paint("red"),
    warn: paint("yellow"),
    dim: paint("gray"),
    bold: paint("bold"),
  };
}

/** "task_a" → "Task A", as the original systems printed it. */
export function displayName(task: string): string {
  return task.split("_").map((word) => word.charAt(0).toUpperCase() + word.slice(1)).join(" ");
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(3)} s`;
}

function show(value: unknown): string {
  return typeof value === "string" ? value : JSON.stringify(value);
}

/** The line printed when a task ends. */
export function formatOutcome(outcome: TaskOutcome, paint: Painter): string {
  const { spec, reply } = outcome;
  if (!reply) {
    return paint.bad(`TIMEOUT ${spec.label}: no reply within ${spec.timeoutMs} ms`) +
      paint.dim(` (task ${outcome.taskId})`);
  }
  const details = paint.dim(
    `(${seconds(reply.duration_ms)}, attempts: ${reply.attempts}, worker: ${reply.worker})`,
  );
  const head = reply.status === "success"
    ? `Result from ${spec.label}: ${show(reply.result)}`
    : `Error from ${spec.label}: ${reply.error?.type}: ${reply.error?.message}`;
  if (outcome.passed) return `${paint.ok(head)} ${details}`;
  return `${paint.bad(head)} ${details}\n  ${paint.bad(`FAILED: ${outcome.problem}`)}`;
}

/** Figures of a finished run. */
export interface RunSummary {
  total: number;
  passed: number;
  failed: number;
  timedOut: number;
  /** Retries per function (attempts beyond the first), in first-seen order. */
  retries: Map<string, number>;
  totalRetries: number;
  /** Sum of the workers' execution times, in ms. */
  sumTaskMs: number;
  /** From the first request sent to the last task ended, in ms. */
  wallMs: number;
}

/** Computes the figures of a run from its outcomes. */
export function summarize(outcomes: TaskOutcome[], wallMs: number): RunSummary {
  const retries = new Map<string, number>();
  let sumTaskMs = 0;
  for (const { spec, reply } of outcomes) {
    const extra = reply ? Math.max(0, reply.attempts - 1) : 0;
    retries.set(spec.task, (retries.get(spec.task) ?? 0) + extra);
    sumTaskMs += reply?.duration_ms ?? 0;
  }
  const passed = outcomes.filter((o) => o.passed).length;
  return {
    total: outcomes.length,
    passed,
    failed: outcomes.length - passed,
    timedOut: outcomes.filter((o) => o.status === "timeout").length,
    retries,
    totalRetries: [...retries.values()].reduce((a, b) => a + b, 0),
    sumTaskMs,
    wallMs,
  };
}

/** The summary lines printed after every task ended. */
export function formatSummary(summary: RunSummary, paint: Painter): string[] {
  const lines = [...summary.retries].map(([task, n]) => `${displayName(task)} retries: ${n}`);
  lines.push(`Total retries: ${summary.totalRetries}`);
  const gain = summary.wallMs > 0 ? summary.sumTaskMs / summary.wallMs : 0;
  lines.push(
    `Total wall time: ${seconds(summary.wallMs)}; sum of task times: ${
      seconds(summary.sumTaskMs)
    } (${gain.toFixed(2)}x from running concurrently)`,
  );
  const verdict = `Passed: ${summary.passed}/${summary.total}`;
  if (summary.failed === 0) lines.push(paint.ok(paint.bold(verdict)));
  else {
    const timeouts = summary.timedOut > 0 ? `, ${summary.timedOut} timed out` : "";
    lines.push(paint.bad(paint.bold(`${verdict} (${summary.failed} failed${timeouts})`)));
  }
  return lines;
}
