import assert from "node:assert/strict";
import type { TaskReply } from "../functions/_runtime/contract.ts";
import type { TaskOutcome } from "./dispatch_all.ts";
import type { TaskSpec } from "./load_config.ts";
import {
  createPainter,
  displayName,
  formatOutcome,
  formatSummary,
  type Painter,
  shouldColor,
  summarize,
} from "./report.ts";

const PLAIN = createPainter(false);

/** A painter that marks what it paints, to see which style each part gets. */
const TAGS: Painter = {
  ok: (text) => `<ok>${text}</ok>`,
  bad: (text) => `<bad>${text}</bad>`,
  warn: (text) => `<warn>${text}</warn>`,
  dim: (text) => `<dim>${text}</dim>`,
  bold: (text) => `<bold>${text}</bold>`,
};

function spec(task: string, label = task): TaskSpec {
  return {
    label,
    task,
    queue: `queue_${task.at(-1)}`,
    timeoutMs: 500,
    retry: {},
    expect: { status: "success" },
  };
}

function reply(overrides: Partial<TaskReply> = {}): TaskReply {
  return {
    task_id: "id-1",
    task: "task_a",
    status: "success",
    result: "Hello from Task A",
    error: null,
    worker: "w1",
    queue: "queue_a",
    attempts: 1,
    started_at: "2024-01-01T00:00:00.000Z",
    finished_at: "2024-01-01T00:00:00.100Z",
    duration_ms: 100,
    ...overrides,
  };
}

function outcome(
  task: TaskSpec,
  replyOrTimeout: TaskReply | "timeout",
  passed = true,
  problem?: string,
): TaskOutcome {
  const base = { spec: task, taskId: "id-1", latencyMs: 1, sentAt: 0, passed, problem };
  return replyOrTimeout === "timeout"
    ? { ...base, status: "timeout" }
    : { ...base, status: replyOrTimeout.status, reply: replyOrTimeout };
}

// --- displayName and colour --------------------------------------------------------

Deno.test("displayName() capitalises each word of a function name", () => {
  assert.equal(displayName("task_a"), "Task A");
  assert.equal(displayName("resize_image_v2"), "Resize Image V2");
  assert.equal(displayName("hello"), "Hello");
});

Deno.test("shouldColor() colours a terminal only when NO_COLOR is unset or empty", () => {
  assert.equal(shouldColor(true, undefined), true);
  assert.equal(shouldColor(true, ""), true);
  assert.equal(shouldColor(true, "1"), false);
  assert.equal(shouldColor(true, "0"), false);
  assert.equal(shouldColor(false, undefined), false);
  assert.equal(shouldColor(false, "1"), false);
});

Deno.test("createPainter(false) leaves text plain", () => {
  for (const paint of [PLAIN.ok, PLAIN.bad, PLAIN.warn, PLAIN.dim, PLAIN.bold]) {
    assert.equal(paint("some text"), "some text");
  }
});

Deno.test("createPainter(true) wraps text in ANSI codes, one style per role", () => {
  const painter = createPainter(true);
  const painted = [painter.ok, painter.bad, painter.warn, painter.dim, painter.bold].map((paint) =>
    paint("some text")
  );
  for (const text of painted) {
    // deno-lint-ignore no-control-regex
    assert.match(text, /^\x1b\[\d+msome text\x1b\[\d+m$/);
  }
  assert.equal(new Set(painted).size, painted.length, "each role has its own style");
  assert.ok(painted[0].startsWith("\x1b[32m"), "ok is green");
  assert.ok(painted[1].startsWith("\x1b[31m"), "bad is red");
});

// --- formatOutcome -----------------------------------------------------------------

Deno.test("formatOutcome() shows the result, time, attempts and worker of a success", () => {
  const line = formatOutcome(
    outcome(spec("task_a"), reply({ duration_ms: 1234.5, attempts: 2, worker: "w7" })),
    PLAIN,
  );
  assert.equal(line, "Result from task_a: Hello from Task A (1.234 s, attempts: 2, worker: w7)");
  assert.equal(
    formatOutcome(outcome(spec("task_a"), reply()), TAGS),
    "<ok>Result from task_a: Hello from Task A</ok> <dim>(0.100 s, attempts: 1, worker: w1)</dim>",
  );
});

Deno.test("formatOutcome() shows a result that is not a string as JSON", () => {
  const line = formatOutcome(outcome(spec("task_a"), reply({ result: { n: [1, 2] } })), PLAIN);
  assert.match(line, /^Result from task_a: \{"n":\[1,2\]\} \(/);
});

Deno.test("formatOutcome() shows the label of a numbered task", () => {
  const line = formatOutcome(outcome(spec("task_a", "task_a#3"), reply()), PLAIN);
  assert.match(line, /^Result from task_a#3: /);
});

Deno.test("formatOutcome() shows an expected error reply as passed", () => {
  const error = { type: "SimulatedFailure", message: "Failing attempt 2" };
  const line = formatOutcome(
    outcome(spec("task_b"), reply({ status: "error", result: null, error, attempts: 2 })),
    TAGS,
  );
  assert.equal(
    line,
    "<ok>Error from task_b: SimulatedFailure: Failing attempt 2</ok> " +
      "<dim>(0.100 s, attempts: 2, worker: w1)</dim>",
  );
});

Deno.test("formatOutcome() shows why a task failed on a second line", () => {
  const error = { type: "SimulatedFailure", message: "Failing attempt 1" };
  const failed = outcome(
    spec("task_a"),
    reply({ status: "error", result: null, error }),
    false,
    "expected success, got SimulatedFailure: Failing attempt 1",
  );
  assert.equal(
    formatOutcome(failed, PLAIN),
    "Error from task_a: SimulatedFailure: Failing attempt 1 (0.100 s, attempts: 1, worker: w1)\n" +
      "  FAILED: expected success, got SimulatedFailure: Failing attempt 1",
  );
  assert.match(formatOutcome(failed, TAGS), /^<bad>Error from task_a: .*\n {2}<bad>FAILED: /);
});

Deno.test("formatOutcome() shows a timeout with the task's deadline and id", () => {
  const timedOut = outcome(spec("task_b"), "timeout", false, "TIMEOUT: no reply");
  assert.equal(
    formatOutcome(timedOut, PLAIN),
    "TIMEOUT task_b: no reply within 500 ms (task id-1)",
  );
  assert.equal(
    formatOutcome(timedOut, TAGS),
    "<bad>TIMEOUT task_b: no reply within 500 ms</bad><dim> (task id-1)</dim>",
  );
});

// --- summarize and formatSummary ---------------------------------------------------

const RUN: TaskOutcome[] = [
  outcome(spec("task_a", "task_a#1"), reply({ attempts: 3, duration_ms: 300 })),
  outcome(spec("task_b", "task_b#1"), "timeout", false, "TIMEOUT"),
  outcome(spec("task_a", "task_a#2"), reply({ attempts: 1, duration_ms: 200 })),
  outcome(
    spec("task_b", "task_b#2"),
    reply({ status: "error", error: { type: "X", message: "m" }, attempts: 2, duration_ms: 500 }),
    false,
    "expected success",
  ),
];

Deno.test("summarize() counts retries per function as attempts beyond the first", () => {
  const summary = summarize(RUN, 400);
  assert.deepEqual([...summary.retries], [["task_a", 2], ["task_b", 1]]);
  assert.equal(summary.totalRetries, 3);
});

Deno.test("summarize() sums task times and counts passes, failures and timeouts", () => {
  const summary = summarize(RUN, 400);
  assert.equal(summary.total, 4);
  assert.equal(summary.passed, 2);
  assert.equal(summary.failed, 2);
  assert.equal(summary.timedOut, 1);
  assert.equal(summary.sumTaskMs, 1000);
  assert.equal(summary.wallMs, 400);
});

Deno.test("summarize() lists a function whose only task timed out with no retries", () => {
  const summary = summarize([outcome(spec("task_b"), "timeout", false)], 50);
  assert.deepEqual([...summary.retries], [["task_b", 0]]);
  assert.equal(summary.sumTaskMs, 0);
});

Deno.test("summarize() of no outcomes is all zeros", () => {
  const summary = summarize([], 0);
  assert.deepEqual(summary, {
    total: 0,
    passed: 0,
    failed: 0,
    timedOut: 0,
    retries: new Map(),
    totalRetries: 0,
    sumTaskMs: 0,
    wallMs: 0,
  });
});

Deno.test("formatSummary() prints retries, wall time, the gain and what failed", () => {
  assert.deepEqual(formatSummary(summarize(RUN, 400), PLAIN), [
    "Task A retries: 2",
    "Task B retries: 1",
    "Total retries: 3",
    "Total wall time: 0.400 s; sum of task times: 1.000 s (2.50x from running concurrently)",
    "Passed: 2/4 (2 failed, 1 timed out)",
  ]);
  assert.equal(
    formatSummary(summarize(RUN, 400), TAGS).at(-1),
    "<bad><bold>Passed: 2/4 (2 failed, 1 timed out)</bold></bad>",
  );
});

Deno.test("formatSummary() prints a plain verdict when every task passed", () => {
  const run = [
    outcome(spec("task_a"), reply({ duration_ms: 100 })),
    outcome(spec("task_b"), reply({ duration_ms: 200 })),
  ];
  const lines = formatSummary(summarize(run, 250), PLAIN);
  assert.deepEqual(lines, [
    "Task A retries: 0",
    "Task B retries: 0",
    "Total retries: 0",
    "Total wall time: 0.250 s; sum of task times: 0.300 s (1.20x from running concurrently)",
    "Passed: 2/2",
  ]);
  assert.equal(
    formatSummary(summarize(run, 250), TAGS).at(-1),
    "<ok><bold>Passed: 2/2</bold></ok>",
  );
});

Deno.test("formatSummary() leaves out timeouts when none happened and survives a zero wall time", () => {
  const run = [outcome(spec("task_a"), reply(), false, "expected something else")];
  const lines = formatSummary(summarize(run, 0), PLAIN);
  assert.equal(
    lines[2],
    "Total wall time: 0.000 s; sum of task times: 0.100 s (0.00x from running concurrently)",
  );
  assert.equal(lines[3], "Passed: 0/1 (1 failed)");
});
