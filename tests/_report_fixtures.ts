/**
 * Hand-made outcomes and run documents for the report tests: fixed times, so
 * every figure the tests check can be worked out by hand.
 *
 * @module
 */

import type { TaskProgress, TaskReply } from "../core/contract/mod.ts";
import type { TaskOutcome } from "../dispatcher/dispatch_all.ts";
import type { TaskSpec } from "../dispatcher/config/load_config.ts";
import type { EventSpec } from "../dispatcher/config/scenario_events.ts";
import { type EventOutcome, eventRecords } from "../dispatcher/event_runs.ts";
import { buildRunDocument, type EventRecord, type RunDocument } from "../dispatcher/report/mod.ts";

/** 2026-01-01T12:00:00.000Z: when every fixture run starts. */
export const T0 = Date.parse("2026-01-01T12:00:00.000Z");

/** An ISO time `ms` after {@linkcode T0}. */
export const at = (ms: number) => new Date(T0 + ms).toISOString();

/** A task spec of `task` on `queue_<letter>`. */
export function spec(task: string, label = task, extra: Partial<TaskSpec> = {}): TaskSpec {
  return {
    label,
    task,
    queue: `queue_${task.slice(-1)}`,
    timeoutMs: 1000,
    retry: {},
    expect: { status: "success" },
    ...extra,
  };
}

/** Options for {@linkcode outcome}, times in ms after {@linkcode T0}. */
export interface OutcomeFixture {
  spec: TaskSpec;
  sent: number;
  ended: number;
  /** Each attempt: when it started and ended, and on which worker. */
  attempts?: { start: number; end: number; worker: string }[];
  status?: "success" | "error" | "timeout";
  result?: unknown;
  error?: { type: string; message: string };
  passed?: boolean;
  problem?: string;
}

/** A task's outcome as `dispatchAll()` would report it. */
export function outcome(fixture: OutcomeFixture): TaskOutcome {
  const attempts = fixture.attempts ?? [];
  const status = fixture.status ?? "success";
  const progress: TaskProgress[] = [];
  attempts.forEach((attempt, i) => {
    const base = {
      task_id: `id-${fixture.spec.label}`,
      task: fixture.spec.task,
      worker: attempt.worker,
      queue: fixture.spec.queue,
      attempt: i + 1,
    };
    progress.push({ ...base, event: "started", at: at(attempt.start) });
    if (i < attempts.length - 1) {
      progress.push({
        ...base,
        event: "retry",
        at: at(attempt.end),
        error: { type: "SimulatedFailure", message: `attempt ${i + 1} failed` },
        delay_ms: 100,
        max_retries: 3,
      });
    }
  });
  const last = attempts.at(-1);
  const reply: TaskReply | undefined = status === "timeout" || !last ? undefined : {
    task_id: `id-${fixture.spec.label}`,
    task: fixture.spec.task,
    status,
    result: status === "success" ? fixture.result ?? "ok" : null,
    error: status === "error" ? fixture.error ?? { type: "Boom", message: "it broke" } : null,
    worker: last.worker,
    queue: fixture.spec.queue,
    attempts: attempts.length,
    started_at: at(last.start),
    finished_at: at(last.end),
    duration_ms: last.end - last.start,
  };
  return {
    spec: fixture.spec,
    taskId: `id-${fixture.spec.label}`,
    status,
    reply,
    passed: fixture.passed ?? status === "success",
    problem: fixture.problem ??
      (status === "timeout" ? `TIMEOUT: no reply within ${fixture.spec.timeoutMs} ms` : undefined),
    latencyMs: fixture.ended - fixture.sent,
    sentAt: fixture.sent,
    sentWallMs: T0 + fixture.sent,
    endedWallMs: T0 + fixture.ended,
    progress,
  };
}

/**
 * A run of four tasks: task_a passes at once (waits 10 ms, runs 100 ms),
 * task_b passes on its third attempt, a second task_a fails with an error,
 * and task_c times out while its attempt still runs; with `events` before them.
 */
export function sampleRun(events: EventRecord[] = []): RunDocument {
  const outcomes = [
    outcome({
      spec: spec("task_a", "task_a#1"),
      sent: 0,
      ended: 112,
      attempts: [{ start: 10, end: 110, worker: "task_a@one" }],
      result: "Hello from Task A",
    }),
    outcome({
      spec: spec("task_b"),
      sent: 1,
      ended: 700,
      attempts: [
        { start: 5, end: 50, worker: "task_b@one" },
        { start: 200, end: 240, worker: "task_b@two" },
        { start: 500, end: 698, worker: "task_b@one" },
      ],
      result: { n: 1 },
    }),
    outcome({
      spec: spec("task_a", "task_a#2"),
      sent: 2,
      ended: 150,
      attempts: [{ start: 110, end: 148, worker: "task_a@one" }],
      status: "error",
      error: { type: "Boom", message: 'it <broke> & "failed"' },
      problem: 'expected success, got Boom: it <broke> & "failed"',
    }),
    outcome({
      spec: spec("task_c", "task_c", { timeoutMs: 900 }),
      sent: 3,
      ended: 903,
      attempts: [{ start: 20, end: 0, worker: "task_c@one" }],
      status: "timeout",
      passed: false,
    }),
  ];
  return buildRunDocument(outcomes, {
    config: { name: "Fixture config", file: "fixture.yml" },
    scenario: { name: "sample", description: "four tasks, every kind of end" },
    broker: "amqp://guest:***@localhost:5672",
    workers: [],
    startedWallMs: T0,
    finishedWallMs: T0 + 903,
    wallMs: 903,
  }, events);
}

/** An event spec of `type` expecting `runs` (`function` or `function:status`). */
export function eventSpec(type: string, runs: string[], timeoutMs = 500): EventSpec {
  return {
    type,
    data: {},
    timeoutMs,
    binary: false,
    expectRuns: runs.map((run) => {
      const [fn, status = "success"] = run.split(":");
      return { function: fn, status: status as "success" | "error" };
    }),
  };
}

/**
 * Four events, every kind of verdict, as `runScenarioEvents()` would report
 * them: demo.greet runs task_a and, down the chain, task_b (passed); a second
 * demo.greet expects task_b to fail but it succeeds; demo.other's task_c is
 * never reported; demo.denied cannot be emitted.
 */
export function sampleEventOutcomes(): EventOutcome[] {
  const run = (fn: string, eventId: string, status: "success" | "error" = "success") => ({
    function: fn,
    eventId,
    status,
    worker: `${fn}@one`,
    durationMs: 12,
  });
  const judged = (spec: EventSpec, id: string, runs: ReturnType<typeof run>[], sent: number) => {
    const expectations = spec.expectRuns.map((expected) => {
      const seen = runs.find((r) => r.function === expected.function);
      return { expected, ...(seen && { seen }), passed: seen?.status === expected.status };
    });
    return {
      spec,
      id,
      runs,
      expectations,
      passed: expectations.every((e) => e.passed),
      sentWallMs: T0 + sent,
      endedWallMs: T0 + sent + 40,
    };
  };
  return [
    judged(eventSpec("demo.greet", ["task_a", "task_b"]), "ev-1", [
      run("task_a", "ev-1"),
      run("task_b", "ev-1-chained"),
    ], 0),
    judged(eventSpec("demo.greet", ["task_b:error"]), "ev-2", [run("task_b", "ev-2")], 100),
    judged(eventSpec("demo.other", ["task_c"]), "ev-3", [], 200),
    {
      spec: eventSpec("demo.denied", ["task_a"]),
      problem: "Cannot emit 'demo.denied' as broker user 'dispatcher' may not",
      runs: [],
      expectations: [{ expected: { function: "task_a", status: "success" }, passed: false }],
      passed: false,
      sentWallMs: T0 + 300,
      endedWallMs: T0 + 301,
    },
  ];
}

/** The records of {@linkcode sampleEventOutcomes}. */
export function sampleEvents(): EventRecord[] {
  return eventRecords(sampleEventOutcomes());
}
