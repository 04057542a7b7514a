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
 * @module
 */

import type { Broker, Delivery } from "../core/broker/mod.ts";
import { GUEST_USER, parseReply, replyQueueName } from "../core/contract/mod.ts";
import type { FunctionRoute } from "../core/registry.ts";
import { emitEvent } from "../client/emit.ts";
import type { EventSpec, ExpectedRun } from "./config/scenario_events.ts";

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
    try {
      await emitEvent(broker, spec.type, spec.data, {
        id,
        mode: spec.binary ? "binary" : "structured",
        replyTo: queue,
      });
    } catch (error) {
      return failed(spec, (error as Error).message);
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
      say(
        `RAN       ${run.function} ${run.status} on ${run.worker} in ${
          (run.durationMs / 1000).toFixed(3)
        } s${run.errorType ? ` (${run.errorType})` : ""}${
          run.eventId === id ? "" : ` (down the chain, event ${run.eventId})`
        }`,
      );
    }
    const expectations = spec.expectRuns.map((expected) => {
      const seen = match(expected);
      return { expected, ...(seen && { seen }), passed: seen?.status === expected.status };
    });
    return { spec, id, runs: [...runs], expectations, passed: expectations.every((e) => e.passed) };
  }
}

function failed(spec: EventSpec, problem: string): EventOutcome {
  return {
    spec,
    problem,
    runs: [],
    expectations: spec.expectRuns.map((expected) => ({ expected, passed: false })),
    passed: false,
  };
}

/** The report's lines for the outcomes. */
export function formatEventOutcomes(outcomes: readonly EventOutcome[]): string[] {
  const lines: string[] = [];
  for (const outcome of outcomes) {
    const head = `Event ${outcome.spec.type}${outcome.id ? ` (${outcome.id})` : ""}`;
    if (outcome.problem) {
      lines.push(`${head}: FAILED: ${outcome.problem}`);
      continue;
    }
    for (const { expected, seen, passed } of outcome.expectations) {
      lines.push(
        `${head}: ${expected.function} expected to end in ${expected.status}, ${
          seen ? `ended in ${seen.status}` : `not reported within ${outcome.spec.timeoutMs} ms`
        }: ${passed ? "passed" : "FAILED"}`,
      );
    }
  }
  const passed = outcomes.filter((o) => o.passed).length;
  lines.push(`Events passed: ${passed}/${outcomes.length}`);
  return lines;
}
