import assert from "node:assert/strict";
import { sampleEvents, sampleRun } from "../../tests/_report_fixtures.ts";
import { runDocumentOf } from "./run_document.ts";
import { htmlReportParts, renderHtmlReport } from "./html_report.ts";
import { escapeXml } from "./junit_report.ts";
import {
  concurrencySteps,
  MAX_TIMELINE_ROWS,
  WORKER_COLORS,
  workerColors,
} from "./html_timeline.ts";

/** Every start tag `<name ...>` in `html` with its attributes. */
function tags(html: string, name: string): Record<string, string>[] {
  return [...html.matchAll(new RegExp(`<${name}\\b([^>]*)>`, "g"))].map((match) =>
    Object.fromEntries([...match[1].matchAll(/([\w-]+)="([^"]*)"/g)].map((a) => [a[1], a[2]]))
  );
}

Deno.test("renderHtmlReport() draws a bar per attempt, the queue waits and the timeout", () => {
  const run = sampleRun();
  const html = renderHtmlReport(run);
  const rects = tags(html, "rect");
  const runs = rects.filter((r) => r.class?.startsWith("bar run"));
  const attempts = run.tasks.flatMap((t) => t.timeline);
  assert.equal(runs.length, attempts.length);
  assert.equal(runs.length, 6);
  for (const bar of runs) assert.ok(Number(bar.width) > 0, `bar width ${bar.width}`);
  assert.deepEqual(runs.map((r) => r.class), [
    "bar run success",
    "bar run retry",
    "bar run retry",
    "bar run success",
    "bar run error",
    "bar run unfinished",
  ]);
  // Worker colours: each worker has its own, the same on every bar.
  const colors = workerColors(run.tasks);
  assert.deepEqual([...colors.keys()], ["task_a@one", "task_b@one", "task_b@two", "task_c@one"]);
  for (const bar of runs) assert.equal(bar.fill, colors.get(bar["data-worker"]));
  assert.deepEqual(new Set(colors.values()).size, 4);
  assert.ok([...colors.values()].every((c) => WORKER_COLORS.includes(c)));
  // Waits in the queue, retry gaps and the timeout.
  assert.equal(rects.filter((r) => r.class === "bar queued").length, 4);
  assert.equal(tags(html, "line").filter((l) => l.class === "retry-wait").length, 2);
  assert.equal(rects.filter((r) => r.class === "bar timeout").length, 1);
  // Wider bars for longer attempts: task_b's third attempt (198 ms) is wider than its second (40 ms).
  assert.ok(Number(runs[3].width) > 4 * Number(runs[2].width));
});

Deno.test("renderHtmlReport() is self-contained and escapes what it shows", () => {
  const html = renderHtmlReport(sampleRun());
  assert.match(html, /^<!doctype html>/);
  assert.doesNotMatch(html, /<script|<link|<img|<iframe|@import|url\(|src=|href=/i);
  assert.doesNotMatch(html, /https?:\/\//, "no address to fetch");
  assert.match(html, /it &lt;broke&gt; &amp; &quot;failed&quot;/);
  assert.doesNotMatch(html, /<broke>/);
  assert.match(html, /<h1>sample<span class="verdict fail">Failed 2\/4<\/span><\/h1>/);
  assert.match(html, /running at once \(peak 3\)/);
});

Deno.test("renderHtmlReport() shows each event's verdict and reason, and counts events in its verdict", () => {
  const events = sampleEvents();
  const html = renderHtmlReport(sampleRun(events));
  assert.match(
    html,
    /<h1>sample<span class="verdict fail">Failed 2\/4 tasks, 1\/4 events<\/span><\/h1>/,
  );
  assert.match(html, /<b>1\/4<\/b><span class="muted">events passed<\/span>/);
  const section = html.slice(html.indexOf("<h2>Events</h2>"), html.indexOf("<h2>Timeline</h2>"));
  const rows = section.match(/<tr( class="failed")?><td>[^<]*<\/td>/g) ?? [];
  assert.deepEqual(rows.map((row) => row.replace(/<[^>]+>/g, "")), events.map((e) => e.label));
  assert.deepEqual(rows.map((row) => row.includes("failed")), [false, true, true, true]);
  // The reason the terminal gives, in the verdict's title, for each failed event.
  for (const event of events.filter((e) => !e.passed)) {
    assert.ok(
      section.includes(`<span title="${escapeXml(event.problem!)}">failed</span>`),
      event.label,
    );
  }
  assert.match(section, /task_b success on task_b@one down the chain, event ev-1-chained/);
  assert.match(section, /task_c: success expected, not reported within 500 ms \(FAILED\)/);

  // Events alone: no timeline or table of tasks, and a passing verdict when they pass.
  const alone = runDocumentOf([], {
    config: { name: "c", file: "c.yml" },
    scenario: { name: "greet", description: "" },
    broker: "memory://test",
    workers: [],
    startedWallMs: 0,
    finishedWallMs: 50,
    wallMs: 0,
  }, events.slice(0, 1));
  const page = renderHtmlReport(alone);
  assert.match(page, /<span class="verdict pass">Passed 1\/1 events<\/span>/);
  assert.doesNotMatch(page, /<h2>Timeline<\/h2>|<h2>Tasks<\/h2>|NaN/);
  assert.match(page, /<h2>Events<\/h2>/);
});

Deno.test("concurrencySteps() counts overlapping intervals, back-to-back ones not", () => {
  assert.deepEqual(
    concurrencySteps([
      { start: 0, end: 10 },
      { start: 5, end: 15 },
      { start: 10, end: 20 },
    ]),
    [[0, 1], [5, 2], [10, 2], [15, 1], [20, 0]],
  );
  assert.deepEqual(concurrencySteps([]), []);
});

Deno.test("renderHtmlReport() of 100,000 tasks lists every one and draws the first MAX_TIMELINE_ROWS", () => {
  const sample = sampleRun();
  // Spreading this many times into Math.min once overflowed the stack.
  const tasks = Array.from({ length: 100_000 }, (_, i) => ({
    ...sample.tasks[i % 2],
    label: `task#${i + 1}`,
  }));
  const run = { ...sample, tasks };
  let html = "";
  for (const part of htmlReportParts(run)) html += part;
  assert.equal(html, renderHtmlReport(run));
  assert.equal(html.match(/<g class="task"/g)?.length, MAX_TIMELINE_ROWS);
  assert.equal(html.match(/<tr(?: class="failed")?><td>task#/g)?.length, 100_000);
  assert.match(html, /The first 2000 of 100000 tasks are drawn; the table below lists every one/);
});
