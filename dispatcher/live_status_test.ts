import assert from "node:assert/strict";
import { outcome, spec } from "../tests/_report_fixtures.ts";
import { createLiveStatus } from "./live_status.ts";
import { createPainter } from "./cli/paint.ts";

function setup(color = false) {
  const lines: string[] = [];
  const status = createLiveStatus({
    write: (line) => lines.push(line),
    paint: createPainter(color),
    labelWidth: 8,
    now: () => new Date(2026, 0, 1, 21, 28, 56, 41),
  });
  return { lines, status };
}

Deno.test("createLiveStatus() writes a timestamped line per state change", () => {
  const { lines, status } = setup();
  const a = spec("task_a");
  status.onSent!(a, "5f0c");
  const base = { task_id: "5f0c", task: "task_a", worker: "task_a@one", queue: "queue_a" };
  status.onProgress!(a, { ...base, event: "started", attempt: 1, at: "" });
  status.onProgress!(a, {
    ...base,
    event: "retry",
    attempt: 1,
    at: "",
    error: { type: "SimulatedFailure", message: "no luck" },
    delay_ms: 200,
    max_retries: 3,
  });
  status.onDone!(outcome({
    spec: a,
    sent: 0,
    ended: 600,
    attempts: [
      { start: 0, end: 10, worker: "task_a@one" },
      { start: 100, end: 606, worker: "task_a@one" },
    ],
  }));
  assert.deepEqual(lines, [
    "[21:28:56.041] SENT      task_a    to queue_a as 5f0c",
    "[21:28:56.041] STARTED   task_a    on task_a@one (attempt 1)",
    "[21:28:56.041] RETRY 1/3 task_a    SimulatedFailure: no luck (next attempt in 0.200s)",
    "[21:28:56.041] SUCCESS   task_a    in 0.506s on task_a@one",
  ]);
});

Deno.test("createLiveStatus() reports FAILED, TIMEOUT and an unmet expectation", () => {
  const { lines, status } = setup();
  status.onDone!(outcome({
    spec: spec("task_b"),
    sent: 0,
    ended: 50,
    attempts: [{ start: 1, end: 40, worker: "task_b@one" }],
    status: "error",
    error: { type: "SimulatedFailure", message: "always" },
    passed: true,
  }));
  status.onDone!(outcome({ spec: spec("task_c"), sent: 0, ended: 1000, status: "timeout" }));
  status.onDone!(outcome({
    spec: spec("task_a"),
    sent: 0,
    ended: 50,
    attempts: [{ start: 1, end: 40, worker: "task_a@one" }],
    passed: false,
    problem: 'expected result "x", got "ok"',
  }));
  assert.deepEqual(lines, [
    "[21:28:56.041] FAILED    task_b    SimulatedFailure: always (attempts: 1)",
    "[21:28:56.041] TIMEOUT   task_c    no reply within 1000 ms",
    '[21:28:56.041] SUCCESS   task_a    in 0.039s on task_a@one - does not pass: expected result "x", got "ok"',
  ]);
});

Deno.test("createLiveStatus() colours the state on a terminal", () => {
  const { lines, status } = setup(true);
  status.onSent!(spec("task_a"), "id");
  assert.ok(lines[0].includes("\x1b["), "coloured");
});

Deno.test("createLiveStatus() prints a function's errors, worker names and problems escaped", () => {
  const { lines, status } = setup();
  const esc = "\u001b]0;PWNED\u0007\u001b[2J";
  status.onProgress!(spec("task_a"), {
    task_id: "t",
    task: "task_a",
    worker: `w${esc}`,
    queue: "queue_a",
    event: "started",
    attempt: 1,
    at: "",
  });
  status.onDone!(outcome({
    spec: spec("task_b"),
    sent: 0,
    ended: 50,
    attempts: [{ start: 1, end: 40, worker: "task_b@one" }],
    status: "error",
    error: { type: `Boom${esc}`, message: `line\n${esc}\u009b8m` },
    passed: false,
    problem: `expected success, got ${esc}`,
  }));
  const text = lines.join("\n");
  assert.ok(!text.includes("\u001b") && !text.includes("\u009b"), text);
  assert.match(lines[1], /FAILED {4}task_b {4}Boom\\u001b\]0;PWNED\\u0007\\u001b\[2J: line\\n/);
  assert.match(lines[1], /does not pass: expected success, got \\u001b/);
});
