import assert from "node:assert/strict";
import { outcome, sampleRun, spec } from "../../tests/_report_fixtures.ts";
import { createPainter, shouldColor } from "../cli/paint.ts";
import { buildRunDocument } from "./run_document.ts";
import { clockTime, displayName, formatSummary } from "./summary.ts";

const plain = createPainter(false);

Deno.test("clockTime() shows local time to the millisecond", () => {
  const date = new Date(2026, 0, 2, 9, 5, 7, 41);
  assert.equal(clockTime(date), "09:05:07.041");
});

Deno.test("shouldColor() colours only a terminal without NO_COLOR", () => {
  assert.equal(shouldColor(true, undefined), true);
  assert.equal(shouldColor(true, ""), true);
  assert.equal(shouldColor(true, "1"), false);
  assert.equal(shouldColor(false, undefined), false);
});

Deno.test("formatSummary() lists each task with where and when it ran, then the figures", () => {
  const run = sampleRun();
  const lines = formatSummary(run, plain);
  const text = lines.join("\n");
  assert.equal(lines[0], "Successful: 2, failed: 2 (1 errors, 1 timed out)");
  assert.ok(
    lines.includes(
      "Result from task_a#1: Hello from Task A (0.100 s, attempts: 1, worker: task_a@one)",
    ),
    text,
  );
  const detail = lines[lines.indexOf(lines.find((l) => l.startsWith("Result from task_a#1"))!) + 1];
  assert.equal(
    detail,
    `    queue queue_a, task id-task_a#1, waited 0.010 s in queue, finished at ${
      clockTime(run.tasks[0].finished_at!)
    }`,
  );
  assert.match(
    text,
    /^Result from task_b: \{"n":1\} \(0\.198 s, attempts: 3, worker: task_b@one\)$/m,
  );
  assert.match(text, /^Error from task_a#2: Boom: it <broke> & "failed" \(0\.038 s, attempts: 1/m);
  assert.match(text, /^ {2}FAILED: expected success, got Boom/m);
  assert.match(
    text,
    /^TIMEOUT task_c: no reply within 900 ms \(task id-task_c; last seen on task_c@one, attempt 1\)$/m,
  );
  assert.match(text, /gave up at \d\d:\d\d:\d\d\.\d{3}$/m);
  assert.match(
    text,
    /^Task A retries: 0\nTask B retries: 2\nTask C retries: 0\nTotal retries: 2$/m,
  );
  assert.match(
    text,
    /^Execution time: average 0\.112 s, fastest 0\.038 s \(task_a#2\), slowest 0\.198 s \(task_b\)$/m,
  );
  assert.match(
    text,
    /^Total wall time: 0\.903 s; sum of task times: 0\.336 s \(0\.37x from running concurrently\)$/m,
  );
  // What became of the timed-out task's request, before the verdict.
  assert.match(
    lines.at(-2)!,
    /^1 timed out: requests nobody waits for are dead-lettered as 'expired'/,
  );
  assert.equal(lines.at(-1), "Passed: 2/4 (2 failed, 1 timed out)");
});

Deno.test("formatSummary() colours only when asked", () => {
  const coloured = formatSummary(sampleRun(), createPainter(true)).join("\n");
  assert.ok(coloured.includes("\x1b["), "coloured");
  assert.ok(!formatSummary(sampleRun(), plain).join("\n").includes("\x1b["), "plain");
});

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
  for (const paint of [plain.ok, plain.bad, plain.warn, plain.dim, plain.bold]) {
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

Deno.test("formatSummary() prints a function's results and errors with their control characters escaped", () => {
  const esc = "\u001b]0;PWNED\u0007\u001b[2J\u001b[HAll passed";
  const run = buildRunDocument([
    outcome({
      spec: spec("task_a"),
      sent: 0,
      ended: 50,
      attempts: [{ start: 1, end: 40, worker: `task_a@${esc}` }],
      result: esc,
    }),
    outcome({
      spec: spec("task_b"),
      sent: 0,
      ended: 50,
      attempts: [{ start: 1, end: 40, worker: "task_b@one" }],
      status: "error",
      error: { type: esc, message: `${esc}\u009b8m` },
      problem: `expected success, got ${esc}`,
    }),
  ], {
    config: { name: "c", file: "c.yml" },
    scenario: { name: "s", description: "" },
    broker: "amqp://guest:***@localhost:5672",
    workers: [],
    startedWallMs: 0,
    finishedWallMs: 50,
    wallMs: 50,
  });
  const text = formatSummary(run, plain).join("\n");
  assert.ok(!text.includes("\u001b") && !text.includes("\u009b"), text);
  assert.match(
    text,
    /^Result from task_a: \\u001b\]0;PWNED\\u0007\\u001b\[2J\\u001b\[HAll passed \(/m,
  );
  assert.match(text, /worker: task_a@\\u001b\]0;PWNED/);
  assert.match(text, /^Error from task_b: \\u001b\]0;PWNED.*: \\u001b\]0;PWNED.*\\u009b8m/m);
  assert.match(text, /FAILED: expected success, got \\u001b\]0;PWNED/);
});
