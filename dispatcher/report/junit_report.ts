/**
 * A run as JUnit XML, for CI systems that show test reports: one
 * `<testsuite>` per scenario, one `<testcase>` per event (first, as they
 * ran) and per task. A task that did not meet its expectation carries a
 * `<failure>` with the reply's error; one that got no reply in time carries
 * an `<error type="Timeout">`. An event whose runs did not all end as
 * expected carries a `<failure type="UnexpectedRuns">` with each verdict; one
 * that could not be emitted an `<error type="EmitFailed">`. The counts are
 * the terminal's: tasks and events alike.
 *
 * @module
 */

import type { EventRecord, RunDocument, TaskRecord } from "./run_document.ts";

// Characters XML 1.0 does not allow at all, even escaped.
// deno-lint-ignore no-control-regex
const INVALID_XML = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/g;

/** Escapes text for XML content and double-quoted attribute values. */
export function escapeXml(text: string): string {
  return text
    .replace(INVALID_XML, "\uFFFD")
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&apos;")
    .replace(/\n/g, "&#10;")
    .replace(/\r/g, "&#13;")
    .replace(/\t/g, "&#9;");
}

/** Escapes text for XML content, keeping line breaks as they are. */
function escapeText(text: string): string {
  return escapeXml(text).replace(/&#10;/g, "\n").replace(/&#9;/g, "\t");
}

function attributes(values: Record<string, string | number>): string {
  return Object.entries(values).map(([key, value]) => ` ${key}="${escapeXml(String(value))}"`)
    .join("");
}

function secondsText(ms: number): string {
  return (ms / 1000).toFixed(3);
}

function details(task: TaskRecord): string {
  const lines = [
    `task_id: ${task.task_id}`,
    `queue: ${task.queue}`,
    `status: ${task.status}`,
    `worker: ${task.worker ?? "-"}`,
    `attempts: ${task.attempts}`,
    `sent_at: ${task.sent_at}`,
    `started_at: ${task.started_at ?? "-"}`,
    `finished_at: ${task.finished_at ?? "-"}`,
    `queue_wait_ms: ${task.queue_wait_ms ?? "-"}`,
    `duration_ms: ${task.duration_ms ?? "-"}`,
  ];
  if (task.status === "success") lines.push(`result: ${JSON.stringify(task.result)}`);
  return lines.join("\n");
}

function testcase(task: TaskRecord, suite: string): string {
  const head = `    <testcase${
    attributes({
      name: task.label,
      classname: `${suite}.${task.task}`,
      time: secondsText(task.latency_ms),
    })
  }>`;
  const body: string[] = [];
  if (task.status === "timeout") {
    body.push(
      `      <error${attributes({ type: "Timeout", message: task.problem ?? "no reply" })}>${
        escapeText(
          `No reply within ${task.timeout_ms} ms${
            task.worker ? `; last seen on ${task.worker}, attempt ${task.attempts}` : ""
          }`,
        )
      }</error>`,
    );
  } else if (!task.passed) {
    const type = task.error?.type ?? "UnexpectedResult";
    const text = [task.problem ?? "", task.error ? `${task.error.type}: ${task.error.message}` : ""]
      .filter(Boolean).join("\n");
    body.push(
      `      <failure${attributes({ type, message: task.problem ?? "" })}>${
        escapeText(text)
      }</failure>`,
    );
  }
  body.push(`      <system-out>${escapeText(details(task))}</system-out>`);
  return [head, ...body, "    </testcase>"].join("\n");
}

function eventDetails(event: EventRecord): string {
  const lines = [
    `event_id: ${event.id ?? "-"}`,
    `type: ${event.type}`,
    `mode: ${event.mode}`,
    `timeout_ms: ${event.timeout_ms}`,
    `sent_at: ${event.sent_at}`,
    ...event.expected_runs.map((run) =>
      `expected: ${run.function} ${run.expected_status}: ${
        run.status === null ? "not reported" : `${run.status} on ${run.worker}`
      }: ${run.passed ? "passed" : "FAILED"}`
    ),
    ...event.runs.map((run) =>
      `ran: ${run.function} ${run.status} on ${run.worker} in ${run.duration_ms} ms${
        run.error_type ? ` (${run.error_type})` : ""
      }${run.event_id === event.id ? "" : ` (down the chain, event ${run.event_id})`}`
    ),
  ];
  return lines.join("\n");
}

function eventTestcase(event: EventRecord, suite: string): string {
  const head = `    <testcase${
    attributes({
      name: event.label,
      classname: `${suite}.events`,
      time: secondsText(event.latency_ms),
    })
  }>`;
  const body: string[] = [];
  if (event.id === null) {
    body.push(
      `      <error${attributes({ type: "EmitFailed", message: event.problem ?? "" })}>${
        escapeText(event.problem ?? "")
      }</error>`,
    );
  } else if (!event.passed) {
    const verdicts = event.expected_runs.flatMap((run) => run.problem ?? []);
    body.push(
      `      <failure${attributes({ type: "UnexpectedRuns", message: event.problem ?? "" })}>${
        escapeText(verdicts.join("\n"))
      }</failure>`,
    );
  }
  body.push(`      <system-out>${escapeText(eventDetails(event))}</system-out>`);
  return [head, ...body, "    </testcase>"].join("\n");
}

/** The run as a JUnit XML document. */
export function renderJunit(run: RunDocument): string {
  return [...junitLines(run)].join("\n");
}

/**
 * The document of {@linkcode renderJunit} as pieces that join with
 * newlines, a test case each: a big run is written without a string of all of it.
 */
export function* junitLines(run: RunDocument): Generator<string, void, undefined> {
  const { summary, scenario, events } = run;
  const unsent = events.filter((event) => event.id === null).length;
  const errors = summary.timed_out + unsent;
  const failures = summary.failed - summary.timed_out + summary.events.failed - unsent;
  // Events run one after another, before the tasks.
  let eventsMs = 0;
  for (const event of events) eventsMs += event.latency_ms;
  const counts = {
    tests: summary.total + summary.events.total,
    failures,
    errors,
    skipped: 0,
    time: secondsText(summary.wall_ms + eventsMs),
    timestamp: run.started_at,
  };
  const properties = [
    ["config", run.config.file],
    ["broker", run.broker],
    ["workers", run.workers.map((w) => w.worker).join(", ")],
    ["total_retries", String(summary.total_retries)],
  ].map(([name, value]) => `      <property${attributes({ name, value })}/>`);
  yield* [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites${attributes({ name: run.config.name, ...counts })}>`,
    `  <testsuite${attributes({ name: scenario.name, ...counts })}>`,
    "    <properties>",
    ...properties,
    "    </properties>",
  ];
  for (const event of events) yield eventTestcase(event, scenario.name);
  for (const task of run.tasks) yield testcase(task, scenario.name);
  yield* ["  </testsuite>", "</testsuites>", ""];
}
