/**
 * The record of one run, as one JSON document: what `--json` prints, what
 * `results/dispatch_<timestamp>.json` holds, and what the terminal summary,
 * the JUnit XML and the HTML report are made from: the scenario's events
 * (each emitted, and the runs it had to trigger) and its tasks, each with
 * its verdict, and the exit code both decide. Times are ISO 8601 UTC;
 * `sent_at` and `ended_at` come from the dispatcher's clock, `started_at` and
 * `finished_at` from the workers' clocks.
 *
 * @module
 */

import type { TaskError, WorkerInfo } from "../../core/contract/mod.ts";
import type { TaskOutcome } from "../dispatch_all.ts";

/** Identifies the format of a {@linkcode RunDocument}; changes when a field changes meaning. */
export const RUN_DOCUMENT_SCHEMA = "deno-task-system/dispatch-run/1";

/** One attempt of a task, as far as the dispatcher saw it. */
export interface AttemptRecord {
  /** 1 for the first attempt. */
  attempt: number;
  worker: string;
  started_at: string;
  /** When it ended; `null` when it had not ended as the dispatcher stopped waiting. */
  ended_at: string | null;
  /** `retry`: it failed and another attempt followed. */
  outcome: "success" | "error" | "retry" | "unfinished";
  error?: TaskError;
}

/** One task of the run. */
export interface TaskRecord {
  /** Unique in the run: the function name, numbered when it repeats (`task_a#2`). */
  label: string;
  task: string;
  queue: string;
  task_id: string;
  /** How long the dispatcher waited for the reply, across all attempts. */
  timeout_ms: number;
  /** The reply's status, or `timeout` when none came in time. */
  status: "success" | "error" | "timeout";
  /** Whether the reply met the scenario's expectation. */
  passed: boolean;
  /** Why it did not pass. */
  problem: string | null;
  result: unknown;
  error: TaskError | null;
  /** The worker of the last attempt. */
  worker: string | null;
  /** Attempts made, as the reply says (the attempts seen, after a timeout). */
  attempts: number;
  /** When the dispatcher sent it. */
  sent_at: string;
  /** When its first attempt started. */
  started_at: string | null;
  /** When its last attempt finished, by the worker's clock. */
  finished_at: string | null;
  /** When the dispatcher had the reply, or gave up waiting for one. */
  ended_at: string;
  /** From `sent_at` to `started_at`: time in the queue before a worker took it (>= 0). */
  queue_wait_ms: number | null;
  /** Execution time of the last attempt, as the worker measured it. */
  duration_ms: number | null;
  /** From sending to the reply (or the timeout), by the dispatcher's clock. */
  latency_ms: number;
  /** Each attempt the dispatcher knows of, first first. */
  timeline: AttemptRecord[];
}

/** A run an emitted event had to trigger, as the scenario judged it. */
export interface ExpectedRunRecord {
  function: string;
  /** How the scenario expects it to end. */
  expected_status: "success" | "error";
  /** How it ended, or `null` when no run of it was reported in time. */
  status: "success" | "error" | null;
  /** The id of the event it ran: the emitted one, or one down the chain; `null` when unreported. */
  event_id: string | null;
  worker: string | null;
  passed: boolean;
  /** Why it did not pass, as the terminal says it; `null` when it passed. */
  problem: string | null;
}

/** A run a worker reported for an emitted event, expected or not. */
export interface ReportedRunRecord {
  function: string;
  /** The id of the event it ran: the emitted one, or one down the chain. */
  event_id: string;
  status: "success" | "error";
  worker: string;
  error_type: string | null;
  duration_ms: number;
}

/** One event of the scenario: emitted once, then judged by the runs it triggered. */
export interface EventRecord {
  /** Unique in the run: the event's type, numbered when it repeats (`demo.greet#2`). */
  label: string;
  type: string;
  /** The emitted event's id; `null` when it could not be emitted. */
  id: string | null;
  mode: "structured" | "binary";
  /** How long the dispatcher waited for its runs. */
  timeout_ms: number;
  /** Whether every expected run was reported, ending as expected. */
  passed: boolean;
  /** Why it did not pass (a refused emit, or each expected run that failed, joined by `; `). */
  problem: string | null;
  /** When the dispatcher emitted it (or tried to). */
  sent_at: string;
  /** When the dispatcher stopped waiting for its runs. */
  ended_at: string;
  /** From emitting to the last verdict, by the dispatcher's clock. */
  latency_ms: number;
  expected_runs: ExpectedRunRecord[];
  /** Every run reported, in the order reported, down the chain too. */
  runs: ReportedRunRecord[];
}

/** The events' verdicts, counted as the terminal counts them. */
export interface EventSummaryRecord {
  total: number;
  passed: number;
  failed: number;
}

/** A task with its execution time, for the fastest and the slowest. */
export interface TimedTask {
  label: string;
  duration_ms: number;
}

/** Figures of the whole run. */
export interface RunSummaryRecord {
  total: number;
  /** Tasks whose reply met the expectation. */
  passed: number;
  failed: number;
  /** Replies with status success. */
  successful: number;
  /** Replies with status error. */
  errors: number;
  timed_out: number;
  /** Retries per function. */
  retries: Record<string, number>;
  total_retries: number;
  /** From the first request sent to the last task ended. */
  wall_ms: number;
  /** The sum of the execution times: the time the tasks would take one after another. */
  sum_task_ms: number;
  /** `sum_task_ms / wall_ms`: the gain from running tasks concurrently. */
  speedup: number;
  /** Mean execution time of the tasks that replied; `null` when none did. */
  average_ms: number | null;
  fastest: TimedTask | null;
  slowest: TimedTask | null;
  /** The scenario's events; the figures above are of its tasks. */
  events: EventSummaryRecord;
}

/** Everything known about one run. */
export interface RunDocument {
  schema: typeof RUN_DOCUMENT_SCHEMA;
  config: { name: string; file: string };
  scenario: { name: string; description: string };
  /** The broker's address, password masked, or the embedded broker. */
  broker: string;
  started_at: string;
  finished_at: string;
  /** 0 when every task and every event passed, else 1: the dispatcher's own exit code. */
  exit_code: 0 | 1;
  /** The workers that answered the ping before dispatching. */
  workers: WorkerInfo[];
  summary: RunSummaryRecord;
  /** The scenario's events, in the order emitted (before its tasks). */
  events: EventRecord[];
  tasks: TaskRecord[];
}

/** What a run knows besides its outcomes. */
export interface RunContext {
  config: { name: string; file: string };
  scenario: { name: string; description: string };
  broker: string;
  workers: WorkerInfo[];
  /** `Date.now()` when the run began (its first event, else its first task) and ended. */
  startedWallMs: number;
  finishedWallMs: number;
  /** Wall time of the dispatch, in ms. */
  wallMs: number;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

/** The attempts of a task, from its progress events and its reply. */
export function attemptsOf(outcome: TaskOutcome): AttemptRecord[] {
  const attempts = new Map<number, AttemptRecord>();
  for (const event of outcome.progress) {
    const known = attempts.get(event.attempt);
    if (event.event === "started") {
      attempts.set(event.attempt, {
        attempt: event.attempt,
        worker: event.worker,
        started_at: event.at,
        ended_at: known?.ended_at ?? null,
        outcome: known?.outcome ?? "unfinished",
        ...(known?.error && { error: known.error }),
      });
    } else if (known) {
      known.ended_at = event.at;
      known.outcome = "retry";
      if (event.error) known.error = event.error;
    }
  }
  const { reply } = outcome;
  if (reply) {
    attempts.set(reply.attempts, {
      attempt: reply.attempts,
      worker: reply.worker,
      started_at: reply.started_at,
      ended_at: reply.finished_at,
      outcome: reply.status,
      ...(reply.error && { error: reply.error }),
    });
  }
  return [...attempts.values()].sort((a, b) => a.attempt - b.attempt);
}

/** The record of one task. */
export function taskRecord(outcome: TaskOutcome): TaskRecord {
  const { spec, reply } = outcome;
  const timeline = attemptsOf(outcome);
  const first = timeline[0];
  const startedMs = first ? Date.parse(first.started_at) : NaN;
  return {
    label: spec.label,
    task: spec.task,
    queue: spec.queue,
    task_id: outcome.taskId,
    timeout_ms: spec.timeoutMs,
    status: outcome.status,
    passed: outcome.passed,
    problem: outcome.problem ?? null,
    result: reply?.result ?? null,
    error: reply?.error ?? null,
    worker: reply?.worker ?? timeline.at(-1)?.worker ?? null,
    attempts: reply?.attempts ?? timeline.at(-1)?.attempt ?? 0,
    sent_at: iso(outcome.sentWallMs),
    started_at: first?.started_at ?? null,
    finished_at: reply?.finished_at ?? null,
    ended_at: iso(outcome.endedWallMs),
    queue_wait_ms: Number.isNaN(startedMs)
      ? null
      : round(Math.max(0, startedMs - outcome.sentWallMs)),
    duration_ms: reply?.duration_ms ?? null,
    latency_ms: round(outcome.latencyMs),
    timeline,
  };
}

/** The figures of a run, from its task and event records. */
function summarize(
  tasks: TaskRecord[],
  events: readonly EventRecord[],
  wallMs: number,
): RunSummaryRecord {
  const retries: Record<string, number> = {};
  for (const t of tasks) {
    // A task that timed out has no reply to count its attempts by.
    const extra = t.status === "timeout" ? 0 : Math.max(0, t.attempts - 1);
    retries[t.task] = (retries[t.task] ?? 0) + extra;
  }
  const timed = tasks.flatMap((t) =>
    t.duration_ms === null ? [] : [{ label: t.label, duration_ms: t.duration_ms }]
  );
  const sumTaskMs = timed.reduce((sum, t) => sum + t.duration_ms, 0);
  const pick = (better: (a: number, b: number) => boolean) =>
    timed.reduce<TimedTask | null>(
      (best, t) => best === null || better(t.duration_ms, best.duration_ms) ? t : best,
      null,
    );
  const passed = tasks.filter((t) => t.passed).length;
  return {
    total: tasks.length,
    passed,
    failed: tasks.length - passed,
    successful: tasks.filter((t) => t.status === "success").length,
    errors: tasks.filter((t) => t.status === "error").length,
    timed_out: tasks.filter((t) => t.status === "timeout").length,
    retries,
    total_retries: Object.values(retries).reduce((a, b) => a + b, 0),
    wall_ms: round(wallMs),
    sum_task_ms: round(sumTaskMs),
    speedup: wallMs > 0 ? Math.round((sumTaskMs / wallMs) * 100) / 100 : 0,
    average_ms: timed.length > 0 ? round(sumTaskMs / timed.length) : null,
    fastest: pick((a, b) => a < b),
    slowest: pick((a, b) => a > b),
    events: {
      total: events.length,
      passed: events.filter((e) => e.passed).length,
      failed: events.filter((e) => !e.passed).length,
    },
  };
}

/** Builds the document of a finished run. */
export function buildRunDocument(
  outcomes: TaskOutcome[],
  context: RunContext,
  events: EventRecord[] = [],
): RunDocument {
  return runDocumentOf(outcomes.map(taskRecord), context, events);
}

/**
 * Builds the document of a finished run from its task records, made as
 * each task ended (`taskRecord()`): a big run keeps these, not its
 * outcomes; and its event records (`eventRecords()` of `event_runs.ts`).
 */
export function runDocumentOf(
  tasks: TaskRecord[],
  context: RunContext,
  events: EventRecord[] = [],
): RunDocument {
  const summary = summarize(tasks, events, context.wallMs);
  return {
    schema: RUN_DOCUMENT_SCHEMA,
    config: context.config,
    scenario: context.scenario,
    broker: context.broker,
    started_at: iso(context.startedWallMs),
    finished_at: iso(context.finishedWallMs),
    exit_code: summary.failed === 0 && summary.events.failed === 0 ? 0 : 1,
    workers: context.workers,
    summary,
    // Before the tasks: documentLines() writes the tasks, the document's last field, a piece each.
    events,
    tasks,
  };
}

/**
 * The document as `JSON.stringify(document, null, 2)` writes it, in pieces
 * that join with newlines: the fields before the tasks, each task, the end.
 * A run of a hundred thousand tasks is written without a string of all of it.
 */
export function* documentLines(document: RunDocument): Generator<string, void, undefined> {
  const { tasks, ...head } = document;
  // `tasks` is the document's last field: the rest prints before it, as is.
  const text = JSON.stringify({ ...head, tasks: [] }, null, 2);
  if (tasks.length === 0) {
    yield text;
    return;
  }
  yield `${text.slice(0, text.lastIndexOf("[]"))}[`;
  for (let i = 0; i < tasks.length; i++) {
    const task = JSON.stringify(tasks[i], null, 2).replaceAll("\n", "\n    ");
    yield `    ${task}${i < tasks.length - 1 ? "," : ""}`;
  }
  yield "  ]\n}";
}
