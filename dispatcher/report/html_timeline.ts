/**
 * The timeline of the HTML report, as inline SVG: each task's wait in the
 * queue, each attempt on its worker (coloured by worker), retries and the
 * end, under a strip counting the tasks running at each moment.
 *
 * @module
 */

import { escapeXml } from "./junit_report.ts";
import { clockTime, seconds } from "./summary.ts";
import type { RunDocument, TaskRecord } from "./run_document.ts";

/** Colours of the workers' bars, in the order workers first appear. */
export const WORKER_COLORS: readonly string[] = [
  "#2f6fdf",
  "#1a9c6b",
  "#8a4fd8",
  "#d9822b",
  "#0f8fa8",
  "#c2418f",
  "#6b8a1a",
  "#8c6b3f",
];

const PLOT_WIDTH = 880;
const ROW_HEIGHT = 20;
const BAR_HEIGHT = 12;
const STRIP_HEIGHT = 56;
const AXIS_HEIGHT = 24;

const e = (value: unknown) => escapeXml(String(value ?? ""));

function ms(iso: string | null): number | null {
  if (iso === null) return null;
  const value = Date.parse(iso);
  return Number.isNaN(value) ? null : value;
}

/** The colour of each worker that ran an attempt, in order of first appearance. */
export function workerColors(tasks: TaskRecord[]): Map<string, string> {
  const colors = new Map<string, string>();
  for (const task of tasks) {
    for (const attempt of task.timeline) {
      if (!colors.has(attempt.worker)) {
        colors.set(attempt.worker, WORKER_COLORS[colors.size % WORKER_COLORS.length]);
      }
    }
  }
  return colors;
}

interface Interval {
  start: number;
  end: number;
}

/** Tasks running at each change, as [time, count] steps. */
export function concurrencySteps(intervals: Interval[]): [number, number][] {
  const changes: [number, number][] = [];
  for (const { start, end } of intervals) changes.push([start, 1], [end, -1]);
  // Ends before starts at the same instant: back-to-back is not overlap.
  changes.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const steps: [number, number][] = [];
  let running = 0;
  for (const [time, delta] of changes) {
    running += delta;
    if (steps.length > 0 && steps.at(-1)![0] === time) steps.at(-1)![1] = running;
    else steps.push([time, running]);
  }
  return steps;
}

function niceStep(spanMs: number): number {
  const raw = spanMs / 8;
  const power = 10 ** Math.floor(Math.log10(Math.max(raw, 0.001)));
  return [1, 2, 5, 10].map((m) => m * power).find((step) => step >= raw) ?? power * 10;
}

/**
 * Tasks drawn a row each: beyond this many a drawing is too tall to read
 * (and to open), so a bigger run draws its first ones, and says so; the
 * strip above counts every task, and the table below lists every one.
 */
export const MAX_TIMELINE_ROWS = 2000;

/** The run's timeline as an `<svg>` element, bars coloured by `colors`. */
export function renderTimeline(run: RunDocument, colors: Map<string, string>): string {
  return [...timelineParts(run, colors)].join("");
}

/** The timeline of {@linkcode renderTimeline} in pieces: a row each after the head. */
export function* timelineParts(
  run: RunDocument,
  colors: Map<string, string>,
): Generator<string, void, undefined> {
  const all = run.tasks;
  const tasks = all.length > MAX_TIMELINE_ROWS ? all.slice(0, MAX_TIMELINE_ROWS) : all;
  // Loops, not spreads: a hundred thousand arguments overflow the stack.
  let t0 = Infinity;
  let t1 = -Infinity;
  const see = (value: string | null) => {
    const time = ms(value);
    if (time === null) return;
    t0 = Math.min(t0, time);
    t1 = Math.max(t1, time);
  };
  for (const task of all) {
    for (const value of [task.sent_at, task.ended_at, task.finished_at, task.started_at]) {
      see(value);
    }
    for (const attempt of task.timeline) {
      see(attempt.started_at);
      see(attempt.ended_at);
    }
  }
  // Room for the longest row label, at about 7 px per character of 12 px text.
  let longest = 180;
  for (const t of tasks) {
    longest = Math.max(longest, (t.label.length + (t.worker ?? "no worker").length) * 7 + 40);
  }
  const labelWidth = Math.min(420, longest);
  t1 = Math.max(t1, t0 + 1);
  const x = (time: number) => labelWidth + ((time - t0) / (t1 - t0)) * PLOT_WIDTH;
  const width = (from: number, to: number) => Math.max(2, x(to) - x(from));
  const top = STRIP_HEIGHT + AXIS_HEIGHT;
  const height = top + tasks.length * ROW_HEIGHT + 8;
  const parts: string[] = [];

  // Axis: ticks at round offsets from the first request.
  const step = niceStep(t1 - t0);
  for (let offset = 0; offset <= t1 - t0 + 1e-9; offset += step) {
    const at = x(t0 + offset).toFixed(1);
    parts.push(
      `<line class="grid" x1="${at}" x2="${at}" y1="${STRIP_HEIGHT}" y2="${height}"/>`,
      `<text class="tick" x="${at}" y="${STRIP_HEIGHT + 16}">+${seconds(offset)}</text>`,
    );
  }

  // Concurrency strip: how many attempts run at each moment, of every task.
  const intervals: Interval[] = [];
  for (const task of all) {
    for (const attempt of task.timeline) {
      const start = ms(attempt.started_at);
      const end = ms(attempt.ended_at) ?? ms(task.ended_at);
      if (start !== null && end !== null) intervals.push({ start, end: Math.max(start, end) });
    }
  }
  const steps = concurrencySteps(intervals);
  let peak = 0;
  for (const [, count] of steps) peak = Math.max(peak, count);
  const scale = Math.max(1, peak);
  const y = (count: number) => STRIP_HEIGHT - 4 - (count / scale) * (STRIP_HEIGHT - 14);
  if (steps.length > 0) {
    let path = `M${x(steps[0][0]).toFixed(1)},${y(0).toFixed(1)}`;
    let last = 0;
    for (const [time, count] of steps) {
      path += ` L${x(time).toFixed(1)},${y(last).toFixed(1)} L${x(time).toFixed(1)},${
        y(count).toFixed(1)
      }`;
      last = count;
    }
    path += " Z";
    parts.push(`<path class="concurrency" d="${path}"><title>Tasks running at once</title></path>`);
  }
  parts.push(
    `<text class="strip-label" x="${labelWidth - 8}" y="${
      STRIP_HEIGHT / 2
    }">running at once (peak ${peak})</text>`,
  );
  const drawn = tasks.length < all.length
    ? `Timeline of the first ${tasks.length} of ${all.length} tasks`
    : `Timeline of ${tasks.length} tasks`;
  yield `<svg class="timeline" viewBox="0 0 ${labelWidth + PLOT_WIDTH + 16} ${height}" width="${
    labelWidth + PLOT_WIDTH + 16
  }" height="${height}" role="img" aria-label="${e(drawn)}">${parts.join("")}`;

  for (let row = 0; row < tasks.length; row++) {
    const task = tasks[row];
    const rowY = top + row * ROW_HEIGHT;
    const barY = rowY + (ROW_HEIGHT - BAR_HEIGHT) / 2;
    const sent = ms(task.sent_at)!;
    const ended = ms(task.ended_at)!;
    const bars: string[] = [];
    const label = `${task.label} · ${task.worker ?? "no worker"}`;
    bars.push(
      `<text class="label${task.passed ? "" : " failed"}" x="${labelWidth - 8}" y="${
        rowY + ROW_HEIGHT / 2 + 4
      }">${e(label)}</text>`,
    );
    if (task.status === "timeout") {
      bars.push(
        `<rect class="bar timeout" x="${x(sent).toFixed(1)}" y="${barY}" width="${
          width(sent, ended).toFixed(1)
        }" height="${BAR_HEIGHT}"><title>${
          e(`${task.label}: no reply within ${task.timeout_ms} ms`)
        }</title></rect>`,
      );
    }
    const first = task.timeline[0];
    const firstStart = first ? ms(first.started_at) : null;
    if (firstStart !== null && firstStart > sent) {
      bars.push(
        `<rect class="bar queued" x="${x(sent).toFixed(1)}" y="${barY}" width="${
          width(sent, firstStart).toFixed(1)
        }" height="${BAR_HEIGHT}"><title>${
          e(`${task.label}: waited ${seconds(firstStart - sent)} in ${task.queue}`)
        }</title></rect>`,
      );
    }
    task.timeline.forEach((attempt, i) => {
      const start = ms(attempt.started_at)!;
      const end = ms(attempt.ended_at) ?? ended;
      const next = task.timeline[i + 1];
      if (next) {
        const nextStart = ms(next.started_at)!;
        const mid = (barY + BAR_HEIGHT / 2).toFixed(1);
        bars.push(
          `<line class="retry-wait" x1="${x(end).toFixed(1)}" x2="${
            x(nextStart).toFixed(1)
          }" y1="${mid}" y2="${mid}"><title>${
            e(`${task.label}: waiting ${seconds(nextStart - end)} to retry`)
          }</title></line>`,
        );
      }
      const what = attempt.outcome === "retry"
        ? `failed, retried: ${attempt.error?.type ?? ""}`
        : attempt.outcome === "error"
        ? `failed: ${attempt.error?.type ?? ""}`
        : attempt.outcome;
      bars.push(
        `<rect class="bar run ${attempt.outcome}" data-worker="${e(attempt.worker)}" x="${
          x(start).toFixed(1)
        }" y="${barY}" width="${width(start, end).toFixed(1)}" height="${BAR_HEIGHT}" fill="${
          colors.get(attempt.worker)
        }"><title>${
          e(
            `${task.label} attempt ${attempt.attempt} on ${attempt.worker}: ${
              clockTime(start)
            } to ${clockTime(end)} (${seconds(end - start)}), ${what}`,
          )
        }</title></rect>`,
      );
    });
    yield `<g class="task" data-task-id="${e(task.task_id)}">${bars.join("")}</g>`;
  }
  yield "</svg>";
  if (tasks.length < all.length) {
    yield `<p class="muted">The first ${tasks.length} of ${all.length} tasks are drawn; the table below lists every one.</p>`;
  }
}
