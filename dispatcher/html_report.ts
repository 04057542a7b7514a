/**
 * A run as one self-contained HTML page: the summary, a timeline of every
 * task (waiting in the queue, each attempt on its worker, retries, the end)
 * with a strip above it counting the tasks running at each moment, and
 * tables of the tasks and workers. Inline CSS and SVG only: no script, no
 * network, so the file opens anywhere, offline, as it is.
 *
 * @module
 */

import { escapeXml } from "./junit_report.ts";
import { clockTime, seconds } from "./report.ts";
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

function timeline(run: RunDocument, colors: Map<string, string>): string {
  const tasks = run.tasks;
  const times: number[] = [];
  for (const task of tasks) {
    for (const value of [task.sent_at, task.ended_at, task.finished_at, task.started_at]) {
      const time = ms(value);
      if (time !== null) times.push(time);
    }
    for (const attempt of task.timeline) {
      for (const value of [attempt.started_at, attempt.ended_at]) {
        const time = ms(value);
        if (time !== null) times.push(time);
      }
    }
  }
  // Room for the longest row label, at about 7 px per character of 12 px text.
  const labelWidth = Math.min(
    420,
    Math.max(
      180,
      ...tasks.map((t) => (t.label.length + (t.worker ?? "no worker").length) * 7 + 40),
    ),
  );
  const t0 = Math.min(...times);
  const t1 = Math.max(...times, t0 + 1);
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

  // Concurrency strip: how many attempts run at each moment.
  const intervals: Interval[] = [];
  for (const task of tasks) {
    for (const attempt of task.timeline) {
      const start = ms(attempt.started_at);
      const end = ms(attempt.ended_at) ?? ms(task.ended_at);
      if (start !== null && end !== null) intervals.push({ start, end: Math.max(start, end) });
    }
  }
  const steps = concurrencySteps(intervals);
  const peak = Math.max(1, ...steps.map(([, count]) => count));
  const y = (count: number) => STRIP_HEIGHT - 4 - (count / peak) * (STRIP_HEIGHT - 14);
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
    }">running at once (peak ${Math.max(0, ...steps.map(([, c]) => c))})</text>`,
  );

  tasks.forEach((task, row) => {
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
    parts.push(`<g class="task" data-task-id="${e(task.task_id)}">${bars.join("")}</g>`);
  });

  return `<svg class="timeline" viewBox="0 0 ${labelWidth + PLOT_WIDTH + 16} ${height}" width="${
    labelWidth + PLOT_WIDTH + 16
  }" height="${height}" role="img" aria-label="${e(`Timeline of ${tasks.length} tasks`)}">${
    parts.join("")
  }</svg>`;
}

const STYLE = `
:root { color-scheme: light; --ok: #1a7f37; --bad: #cf222e; --muted: #656d76; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px;
  color: #1f2328; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.muted { color: var(--muted); }
.verdict { display: inline-block; padding: 2px 10px; border-radius: 12px; color: #fff;
  font-size: 14px; vertical-align: middle; margin-left: 8px; }
.verdict.pass { background: var(--ok); } .verdict.fail { background: var(--bad); }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 16px 0; }
.card { border: 1px solid #d0d7de; border-radius: 8px; padding: 8px 14px; min-width: 120px; }
.card b { display: block; font-size: 20px; }
.timeline { display: block; max-width: 100%; height: auto; }
.timeline .bar { shape-rendering: crispEdges; }
.timeline .queued { fill: #c9ced6; }
.timeline .timeout { fill: #fbe3e4; stroke: var(--bad); stroke-dasharray: 4 2; }
.timeline .run.retry { stroke: #bf8700; stroke-width: 2; }
.timeline .run.error, .timeline .run.unfinished { stroke: var(--bad); stroke-width: 2; }
.timeline .retry-wait { stroke: #bf8700; stroke-dasharray: 3 3; }
.timeline .grid { stroke: #eaeef2; }
.timeline .tick { font-size: 11px; fill: var(--muted); text-anchor: middle; }
.timeline .label, .timeline .strip-label { font-size: 12px; text-anchor: end; fill: #1f2328; }
.timeline .label.failed { fill: var(--bad); }
.timeline .concurrency { fill: #9ec1f7; stroke: #2f6fdf; }
.legend { display: flex; flex-wrap: wrap; gap: 14px; margin: 8px 0; font-size: 13px; }
.legend span::before { content: ""; display: inline-block; width: 14px; height: 10px;
  margin-right: 5px; background: var(--swatch); border: 1px solid var(--edge, transparent); }
table { border-collapse: collapse; font-size: 13px; }
th, td { text-align: left; padding: 4px 10px; border-bottom: 1px solid #eaeef2;
  white-space: nowrap; }
th { background: #f6f8fa; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.failed td { color: var(--bad); }
td.wrap { white-space: normal; min-width: 200px; max-width: 360px; overflow-wrap: anywhere; }
code { font-size: 12px; }
`;

function card(value: string, label: string): string {
  return `<div class="card"><b>${e(value)}</b><span class="muted">${e(label)}</span></div>`;
}

function taskRow(task: TaskRecord): string {
  const result = task.status === "success"
    ? JSON.stringify(task.result)
    : task.status === "timeout"
    ? "timeout"
    : `${task.error?.type}: ${task.error?.message}`;
  const cells = [
    e(task.label),
    task.passed ? "passed" : `<span title="${e(task.problem)}">failed</span>`,
    e(result.length > 200 ? `${result.slice(0, 197)}...` : result),
    e(task.worker ?? "-"),
    e(task.queue),
    `<code>${e(task.task_id)}</code>`,
  ].map((cell, i) => `<td${i === 2 ? ' class="wrap"' : ""}>${cell}</td>`);
  const numbers = [
    task.queue_wait_ms === null ? "-" : seconds(task.queue_wait_ms),
    task.duration_ms === null ? "-" : seconds(task.duration_ms),
    String(task.attempts),
    clockTime(task.finished_at ?? task.ended_at),
  ].map((cell) => `<td class="num">${e(cell)}</td>`);
  return `<tr${task.passed ? "" : ' class="failed"'}>${[...cells, ...numbers].join("")}</tr>`;
}

/** The run as a self-contained HTML page. */
export function renderHtmlReport(run: RunDocument): string {
  const { summary } = run;
  const colors = workerColors(run.tasks);
  const passed = summary.failed === 0;
  const cards = [
    card(`${summary.passed}/${summary.total}`, "passed"),
    card(String(summary.successful), "successful"),
    card(String(summary.errors + summary.timed_out), "failed or timed out"),
    card(String(summary.total_retries), "retries"),
    card(seconds(summary.wall_ms), "total wall time"),
    card(seconds(summary.sum_task_ms), "sum of task times"),
    card(`${summary.speedup.toFixed(2)}x`, "from running concurrently"),
  ];
  if (summary.average_ms !== null && summary.fastest && summary.slowest) {
    cards.push(
      card(seconds(summary.average_ms), "average execution"),
      card(seconds(summary.fastest.duration_ms), `fastest (${summary.fastest.label})`),
      card(seconds(summary.slowest.duration_ms), `slowest (${summary.slowest.label})`),
    );
  }
  const legend = [
    `<span style="--swatch:#c9ced6">waiting in the queue</span>`,
    ...[...colors].map(([worker, color]) =>
      `<span style="--swatch:${color}">running on ${e(worker)}</span>`
    ),
    `<span style="--swatch:#fff;--edge:#bf8700">attempt failed, retried</span>`,
    `<span style="--swatch:#fff;--edge:#cf222e">failed or unfinished</span>`,
    `<span style="--swatch:#fbe3e4;--edge:#cf222e">no reply in time</span>`,
  ];
  const workers = run.workers.map((w) =>
    `<tr><td>${e(w.worker)}</td><td>${e(w.function)}</td><td>${e(w.queue)}</td><td class="num">${
      e(seconds(w.uptime_ms))
    }</td><td class="num">${w.tasks_done}</td><td class="num">${w.in_flight}</td></tr>`
  );
  const title = `${run.scenario.name}: ${summary.passed}/${summary.total} passed`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${e(title)} - ${e(run.config.name)}</title>
<style>${STYLE}</style>
</head>
<body>
<header>
<h1>${e(run.scenario.name)}<span class="verdict ${passed ? "pass" : "fail"}">${
    passed ? "Passed" : "Failed"
  } ${summary.passed}/${summary.total}</span></h1>
<p>${e(run.scenario.description)}</p>
<p class="muted">${e(run.config.name)} (${e(run.config.file)}) · broker ${e(run.broker)} · ${
    e(run.started_at)
  } to ${e(run.finished_at)}</p>
</header>
<section class="cards">${cards.join("")}</section>
<section>
<h2>Timeline</h2>
<p class="muted">Each row is a task, from the moment the dispatcher sent it; times from the dispatcher's and the workers' clocks.</p>
<div class="legend">${legend.join("")}</div>
${timeline(run, colors)}
</section>
<section>
<h2>Tasks</h2>
<table>
<thead><tr><th>Task</th><th>Verdict</th><th>Result</th><th>Worker</th><th>Queue</th><th>Task id</th><th>Waited</th><th>Ran</th><th>Attempts</th><th>Finished</th></tr></thead>
<tbody>${run.tasks.map(taskRow).join("\n")}</tbody>
</table>
</section>
<section>
<h2>Workers that answered the ping</h2>
${
    workers.length === 0
      ? '<p class="muted">None answered.</p>'
      : `<table><thead><tr><th>Worker</th><th>Function</th><th>Queue</th><th>Uptime</th><th>Tasks done</th><th>In flight</th></tr></thead><tbody>${
        workers.join("")
      }</tbody></table>`
  }
</section>
</body>
</html>
`;
}
