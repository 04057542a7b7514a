/**
 * A run as one self-contained HTML page: the summary, the scenario's events
 * with the verdict on each run they had to trigger, a timeline of every
 * task (waiting in the queue, each attempt on its worker, retries, the end)
 * with a strip above it counting the tasks running at each moment, and
 * tables of the tasks and workers. The verdict and its counts are the
 * terminal's: tasks and events alike. Inline CSS and SVG only: no script, no
 * network, so the file opens anywhere, offline, as it is.
 *
 * @module
 */

import { timelineParts, workerColors } from "./html_timeline.ts";
import { escapeXml } from "./junit_report.ts";
import { clockTime, seconds } from "./summary.ts";
import type { EventRecord, RunDocument, TaskRecord } from "./run_document.ts";

const e = (value: unknown) => escapeXml(String(value ?? ""));

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

function eventRow(event: EventRecord): string {
  const expected = event.id === null
    ? `not emitted: ${event.problem}`
    : event.expected_runs.map((run) =>
      `${run.function}: ${run.expected_status} expected, ${
        run.status === null ? `not reported within ${event.timeout_ms} ms` : `${run.status}`
      }${run.passed ? "" : " (FAILED)"}`
    ).join("; ");
  const runs =
    event.runs.map((run) =>
      `${run.function} ${run.status} on ${run.worker}${
        run.error_type ? ` (${run.error_type})` : ""
      }${run.event_id === event.id ? "" : ` down the chain, event ${run.event_id}`}`
    ).join("; ") || "none";
  const cells = [
    e(event.label),
    event.passed ? "passed" : `<span title="${e(event.problem)}">failed</span>`,
    e(expected),
    e(runs),
    `<code>${e(event.id ?? "-")}</code>`,
  ].map((cell, i) => `<td${i === 2 || i === 3 ? ' class="wrap"' : ""}>${cell}</td>`);
  const took = `<td class="num">${e(seconds(event.latency_ms))}</td>`;
  return `<tr${event.passed ? "" : ' class="failed"'}>${cells.join("")}${took}</tr>`;
}

/** The run as a self-contained HTML page. */
export function renderHtmlReport(run: RunDocument): string {
  return [...htmlReportParts(run)].join("");
}

/**
 * The page of {@linkcode renderHtmlReport} in pieces to write one after
 * another: a run of a hundred thousand tasks never becomes one string.
 */
export function* htmlReportParts(run: RunDocument): Generator<string, void, undefined> {
  const { summary, events } = run;
  const colors = workerColors(run.tasks);
  const passed = run.exit_code === 0;
  const hasTasks = run.tasks.length > 0;
  const cards = hasTasks
    ? [
      card(`${summary.passed}/${summary.total}`, "passed"),
      card(String(summary.successful), "successful"),
      card(String(summary.errors + summary.timed_out), "failed or timed out"),
      card(String(summary.total_retries), "retries"),
      card(seconds(summary.wall_ms), "total wall time"),
      card(seconds(summary.sum_task_ms), "sum of task times"),
      card(`${summary.speedup.toFixed(2)}x`, "from running concurrently"),
    ]
    : [];
  if (events.length > 0) {
    cards.unshift(card(`${summary.events.passed}/${summary.events.total}`, "events passed"));
  }
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
  // Without events, the counts of tasks alone, as the terminal's "Passed: n/m".
  const counts = events.length === 0
    ? `${summary.passed}/${summary.total}`
    : hasTasks
    ? `${summary.passed}/${summary.total} tasks, ${summary.events.passed}/${summary.events.total} events`
    : `${summary.events.passed}/${summary.events.total} events`;
  const title = `${run.scenario.name}: ${counts} passed`;
  yield `<!doctype html>
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
  } ${e(counts)}</span></h1>
<p>${e(run.scenario.description)}</p>
<p class="muted">${e(run.config.name)} (${e(run.config.file)}) · broker ${e(run.broker)} · ${
    e(run.started_at)
  } to ${e(run.finished_at)}</p>
</header>
<section class="cards">${cards.join("")}</section>
`;
  if (events.length > 0) {
    yield `<section>
<h2>Events</h2>
<p class="muted">Each event was emitted once, in turn, before the tasks; each run it triggered, down the chain too, was reported to the dispatcher.</p>
<table>
<thead><tr><th>Event</th><th>Verdict</th><th>Expected runs</th><th>Runs reported</th><th>Event id</th><th>Took</th></tr></thead>
<tbody>${events.map(eventRow).join("\n")}</tbody>
</table>
</section>
`;
  }
  if (hasTasks) yield* taskSections(run, colors, legend);
  yield `<section>
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

/** The timeline and the table of the tasks: a run of events alone has neither. */
function* taskSections(
  run: RunDocument,
  colors: Map<string, string>,
  legend: string[],
): Generator<string, void, undefined> {
  yield `<section>
<h2>Timeline</h2>
<p class="muted">Each row is a task, from the moment the dispatcher sent it; times from the dispatcher's and the workers' clocks.</p>
<div class="legend">${legend.join("")}</div>
`;
  yield* timelineParts(run, colors);
  yield `
</section>
<section>
<h2>Tasks</h2>
<table>
<thead><tr><th>Task</th><th>Verdict</th><th>Result</th><th>Worker</th><th>Queue</th><th>Task id</th><th>Waited</th><th>Ran</th><th>Attempts</th><th>Finished</th></tr></thead>
<tbody>`;
  for (let i = 0; i < run.tasks.length; i++) {
    yield `${i > 0 ? "\n" : ""}${taskRow(run.tasks[i])}`;
  }
  yield `</tbody>
</table>
</section>
`;
}
