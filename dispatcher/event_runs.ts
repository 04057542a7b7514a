/**
 * A scenario's events, run: each is emitted with `reply_to` set to a reply
 * queue of the dispatcher's own (`replies.<32 hex>`, which it may already
 * declare), so that each function that runs it, and each down its chain of
 * `emits`, reports the run there as a reply with the event's id as
 * correlation id (docs/events.md, "Run reports"). A report counts only from
 * the broker user of the function it names. Each expected run must be
 * reported, with its outcome, within the event's timeout. Nothing more than
 * a call needs: no task events, no permission on `tasks.events`.
 *
 * Each outcome becomes a record of the run's document
 * ({@linkcode eventRecords}), and the terminal's verdict lines are made from
 * those records ({@linkcode formatEventRecords}): the JSON document, the
 * JUnit XML and the HTML report say what the terminal says.
 *
 * @module
 */

import type { Broker, Delivery } from "../core/broker/mod.ts";
import { GUEST_USER, parseReply, replyQueueName } from "../core/contract/mod.ts";
import type { FunctionRoute } from "../core/registry.ts";
import { emitEvent } from "../client/emit.ts";
import { escapeControls } from "./cli/terminal_text.ts";
import type { EventSpec, ExpectedRun } from "./config/scenario_events.ts";
import type { EventRecord, ExpectedRunRecord } from "./report/mod.ts";

/** A run a worker reported: its function, and how it ended. */
export interface ObservedRun {
  function: string;
  /** The id of the event it ran: the emitted one, or one down the chain. */
  eventId: string;
  status: "success" | "error";
  worker: string;
  errorType?: string;
  durationMs: number;
}

/** What came of one emitted event. */
export interface EventOutcome {
  spec: EventSpec;
  /** Its id; absent when it could not be emitted. */
  id?: string;
  /** Why it failed before any run, such as a refused emit. */
  problem?: string;
  runs: ObservedRun[];
  expectations: { expected: ExpectedRun; seen?: ObservedRun; passed: boolean }[];
  passed: boolean;
  /** `Date.now()` when it was emitted (or the emit was tried), and when the wait for its runs ended. */
  sentWallMs: number;
  endedWallMs: number;
}

/** Options for {@linkcode runScenarioEvents}. */
export interface RunScenarioEventsOptions {
  /** Every function's route: whose reports to believe. */
  routes: ReadonlyMap<string, FunctionRoute>;
  /** A line for people, as each event is emitted and each run reported. */
  say: (line: string) => void;
}

/** Emits each event of `specs` in turn and waits for the runs it must trigger. */
export async function runScenarioEvents(
  broker: Broker,
  specs: readonly EventSpec[],
  options: RunScenarioEventsOptions,
): Promise<EventOutcome[]> {
  const { routes, say } = options;
  const queue = replyQueueName();
  await broker.declareQueue(queue, { durable: false, exclusive: true, autoDelete: true });
  /** Runs reported, by the emitted event's id (the correlation id). */
  const reported = new Map<string, ObservedRun[]>();
  let wake: () => void = () => {};
  const onDelivery = (delivery: Delivery) => {
    broker.ack(delivery);
    const root = delivery.properties.correlationId;
    const parsed = parseReply(delivery.body);
    if (root === undefined || !parsed.ok) return;
    const reply = parsed.value;
    const route = reply.task === null ? undefined : routes.get(reply.task);
    if (!route || reply.task_id === null || !reported.has(root)) return;
    const sender = delivery.properties.userId;
    // A report counts from the function's own workers (on a bare broker, everyone is guest).
    if (sender !== route.user && !(broker.user === GUEST_USER && sender === GUEST_USER)) return;
    const runs = reported.get(root)!;
    // A copy (a redelivered event answered again from the record) is one run.
    if (runs.some((run) => run.function === reply.task && run.eventId === reply.task_id)) return;
    runs.push({
      function: reply.task!,
      eventId: reply.task_id,
      status: reply.status === "success" ? "success" : "error",
      worker: reply.worker,
      ...(reply.error && { errorType: reply.error.type }),
      durationMs: reply.duration_ms,
    });
    wake();
  };
  const consumer = await broker.consume(queue, onDelivery, { prefetch: 256 });
  const outcomes: EventOutcome[] = [];
  try {
    for (const spec of specs) outcomes.push(await runOne(spec));
  } finally {
    await consumer.cancel().catch(() => {});
    await broker.deleteQueue(queue).catch(() => {});
  }
  return outcomes;

  async function runOne(spec: EventSpec): Promise<EventOutcome> {
    const id = crypto.randomUUID();
    reported.set(id, []);
    const sentWallMs = Date.now();
    try {
      await emitEvent(broker, spec.type, spec.data, {
        id,
        mode: spec.binary ? "binary" : "structured",
        replyTo: queue,
      });
    } catch (error) {
      return failed(spec, (error as Error).message, sentWallMs);
    }
    say(`EMITTED   ${spec.type} as ${id}`);
    const runs = reported.get(id)!;
    const match = (expected: ExpectedRun) => runs.find((run) => run.function === expected.function);
    const deadline = Date.now() + spec.timeoutMs;
    while (Date.now() < deadline && !spec.expectRuns.every(match)) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(0, deadline - Date.now()));
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    for (const run of runs) {
      // The worker's name, error type and event id come from its report: hostile text.
      say(
        escapeControls(
          `RAN       ${run.function} ${run.status} on ${run.worker} in ${
            (run.durationMs / 1000).toFixed(3)
          } s${run.errorType ? ` (${run.errorType})` : ""}${
            run.eventId === id ? "" : ` (down the chain, event ${run.eventId})`
          }`,
        ),
      );
    }
    const expectations = spec.expectRuns.map((expected) => {
      const seen = match(expected);
      return { expected, ...(seen && { seen }), passed: seen?.status === expected.status };
    });
    return {
      spec,
      id,
      runs: [...runs],
      expectations,
      passed: expectations.every((e) => e.passed),
      sentWallMs,
      endedWallMs: Date.now(),
    };
  }
}

function failed(spec: EventSpec, problem: string, sentWallMs: number): EventOutcome {
  return {
    spec,
    problem,
    runs: [],
    expectations: spec.expectRuns.map((expected) => ({ expected, passed: false })),
    passed: false,
    sentWallMs,
    endedWallMs: Date.now(),
  };
}

/** The records of the run's document for the outcomes, in order. */
export function eventRecords(outcomes: readonly EventOutcome[]): EventRecord[] {
  const counts = new Map<string, number>();
  for (const { spec } of outcomes) counts.set(spec.type, (counts.get(spec.type) ?? 0) + 1);
  const numbered = new Map<string, number>();
  return outcomes.map((outcome) => {
    const { spec } = outcome;
    const nth = (numbered.get(spec.type) ?? 0) + 1;
    numbered.set(spec.type, nth);
    const expected = outcome.expectations.map(({ expected, seen, passed }): ExpectedRunRecord => ({
      function: expected.function,
      expected_status: expected.status,
      status: seen?.status ?? null,
      event_id: seen?.eventId ?? null,
      worker: seen?.worker ?? null,
      passed,
      problem: passed
        ? null
        : outcome.problem
        ? "the event was not emitted"
        : verdictOf(expected.function, expected.status, seen?.status ?? null, spec.timeoutMs),
    }));
    const problems = outcome.problem ? [outcome.problem] : expected.flatMap((e) => e.problem ?? []);
    return {
      label: counts.get(spec.type)! > 1 ? `${spec.type}#${nth}` : spec.type,
      type: spec.type,
      id: outcome.id ?? null,
      mode: spec.binary ? "binary" : "structured",
      timeout_ms: spec.timeoutMs,
      passed: outcome.passed,
      problem: outcome.passed ? null : problems.join("; "),
      sent_at: new Date(outcome.sentWallMs).toISOString(),
      ended_at: new Date(outcome.endedWallMs).toISOString(),
      latency_ms: outcome.endedWallMs - outcome.sentWallMs,
      expected_runs: expected,
      runs: outcome.runs.map((run) => ({
        function: run.function,
        event_id: run.eventId,
        status: run.status,
        worker: run.worker,
        error_type: run.errorType ?? null,
        duration_ms: run.durationMs,
      })),
    };
  });
}

/** What became of one expected run, in words: `task_b expected to end in error, ended in success`. */
function verdictOf(
  fn: string,
  expected: ExpectedRun["status"],
  seen: ObservedRun["status"] | null,
  timeoutMs: number,
): string {
  return `${fn} expected to end in ${expected}, ${
    seen ? `ended in ${seen}` : `not reported within ${timeoutMs} ms`
  }`;
}

/** The terminal's verdict lines for the events' records, and their count. */
export function formatEventRecords(records: readonly EventRecord[]): string[] {
  const lines: string[] = [];
  for (const record of records) {
    const head = `Event ${record.type}${record.id ? ` (${record.id})` : ""}`;
    if (record.id === null) {
      lines.push(`${head}: FAILED: ${escapeControls(record.problem ?? "")}`);
      continue;
    }
    for (const expected of record.expected_runs) {
      const verdict = verdictOf(
        expected.function,
        expected.expected_status,
        expected.status,
        record.timeout_ms,
      );
      lines.push(`${head}: ${verdict}: ${expected.passed ? "passed" : "FAILED"}`);
    }
  }
  const passed = records.filter((r) => r.passed).length;
  lines.push(`Events passed: ${passed}/${records.length}`);
  return lines;
}
