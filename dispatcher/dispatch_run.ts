/**
 * One run of `deno task dispatch`, once its configuration is loaded, its
 * output paths checked and its broker open: wait for the workers, ping
 * them, emit the scenario's events one by one and judge the runs each
 * triggers, send every task at once with live status, then report the run
 * (events and tasks, one document) and write its files. Built on the client
 * library (`client/task_client.ts`).
 *
 * @module
 */

import type { WorkerInfo } from "../core/contract/mod.ts";
import { createLogger, type Logger } from "../core/log.ts";
import { describeBroker, type OpenedBroker } from "../client/open_broker.ts";
import { unexpectedSenders } from "../client/protocol.ts";
import { TaskClient } from "../client/task_client.ts";
import {
  type CliIo,
  createPainter,
  EXIT,
  joinLines,
  type Painter,
  type Session,
  writeOutput,
} from "./cli/mod.ts";
import type { Config, Scenario, TaskSpec } from "./config/load_config.ts";
import { combineListeners, dispatchEach } from "./dispatch_all.ts";
import { createLiveStatus } from "./live_status.ts";
import { logDispatch } from "./log_dispatch.ts";
import type { DispatchFlags } from "./dispatch_flags.ts";
import {
  documentLines,
  type EventRecord,
  htmlReportParts,
  junitLines,
  type RunDocument,
  runDocumentOf,
  summaryLines,
  type TaskRecord,
  taskRecord,
} from "./report/mod.ts";
import { eventRecords, formatEventRecords, runScenarioEvents } from "./event_runs.ts";

/** The files a run writes, each checked before anything is sent. */
export interface Outputs {
  json?: string;
  junit?: string;
  html?: string;
}

/** What `deno task dispatch` runs: its flags, configuration, scenario and files. */
export interface DispatchPlan {
  flags: DispatchFlags;
  config: Config;
  scenario: Scenario;
  outputs: Outputs;
}

/** Where each kind of output goes. */
interface Voice {
  /** Lines for people that make the report (header, live status, summary). */
  report: (line: string) => void;
  /** Report lines that `--quiet` leaves out. */
  say: (line: string) => void;
  paint: Painter;
  /** The task events, at `--log-level` in `--log-format`, on stderr. */
  log: Logger;
}

/**
 * The report is for people: on stdout, or on stderr when stdout carries the
 * JSON document. With --log-format json stderr carries JSON lines only, so a
 * report bound for stderr is left out.
 */
function voiceOf(flags: DispatchFlags, io: CliIo): Voice {
  const toErr = flags.json;
  const report = toErr ? (flags.logFormat === "json" ? () => {} : io.err) : io.out;
  return {
    report,
    say: flags.quiet ? () => {} : report,
    paint: createPainter(toErr ? io.color.err : io.color.out),
    log: createLogger({
      level: flags.logLevel,
      format: flags.logFormat,
      write: io.err,
      fields: { component: "dispatcher" },
    }),
  };
}

/** The tasks as they run: every timeout replaced by `--timeout-ms` when given. */
function tasksOf(plan: DispatchPlan): TaskSpec[] {
  const { timeoutMs } = plan.flags;
  const { tasks } = plan.scenario;
  return timeoutMs === undefined ? tasks : tasks.map((task) => ({ ...task, timeoutMs }));
}

function functionsOf(plan: DispatchPlan): string[] {
  return [
    ...new Set([
      ...plan.scenario.tasks.map((t) => t.task),
      ...(plan.scenario.events ?? []).flatMap((e) => e.expectRuns.map((run) => run.function)),
    ]),
  ];
}

/** Prints what the run is about, before the broker is opened. */
export function announce(plan: DispatchPlan, io: CliIo): void {
  const { say } = voiceOf(plan.flags, io);
  const { config, scenario } = plan;
  say(`Loaded config: ${config.name} (${config.file})`);
  say(`Scenario: ${scenario.name}${scenario.description ? ` - ${scenario.description}` : ""}`);
  say(`Expected workers: ${functionsOf(plan).length}`);
}

function uptime(ms: number): string {
  const total = Math.floor(ms / 1000);
  const [h, m, s] = [Math.floor(total / 3600), Math.floor(total / 60) % 60, total % 60];
  return h > 0 ? `${h}h ${m}m` : m > 0 ? `${m}m ${s}s` : `${s}s`;
}

/** The lines naming the workers that answered the ping. */
function formatWorkers(workers: WorkerInfo[]): string[] {
  return [
    `Active workers: ${workers.length}`,
    ...workers.map((w) =>
      `  ${w.worker} (${w.function} on ${w.queue}, up ${
        uptime(w.uptime_ms)
      }, ${w.tasks_done} tasks done, ${w.in_flight} in flight)`
    ),
  ];
}

/** The document's file: its JSON, as `JSON.stringify(document, null, 2)`, and a newline. */
function* documentFile(document: RunDocument): Generator<string, void, undefined> {
  yield* joinLines(documentLines(document));
  yield "\n";
}

/** Runs the plan on the open broker; resolves with the exit code. */
export async function runDispatch(
  plan: DispatchPlan,
  opened: OpenedBroker,
  session: Session,
): Promise<number> {
  const { flags, config, scenario, outputs } = plan;
  const { report, say, paint, log } = voiceOf(flags, session.io);
  const tasks = tasksOf(plan);
  const functions = functionsOf(plan);
  say(`Broker: ${describeBroker(opened)}`);
  log.info("Connected", { broker: opened.label });

  const client = await TaskClient.open(opened.broker, {
    functions: config.functions,
    label: opened.label,
    events: session.io.env("TASK_EVENTS") === "true",
    replies: opened.replies,
  });
  try {
    const consumers = await client.waitForWorkers(functions, {
      timeoutMs: flags.waitMs,
      onWaiting: (missing) =>
        say(
          `Waiting up to ${flags.waitMs / 1000} s for workers: ${
            missing.map((m) => m.task).join(", ")
          }`,
        ),
    });
    say(
      `Workers ready: ${
        functions.map((fn) => {
          const { queue } = client.route(fn);
          return `${fn} on ${queue} (${consumers.get(queue)})`;
        }).join(", ")
      }`,
    );
    // Celery workers answer no ping: their queue's consumers are all there is to show.
    const celery = functions.filter((fn) => client.route(fn).protocol === "celery");
    const celeryQueues = new Set(celery.map((fn) => client.route(fn).queue));
    const pinged = new Map([...consumers].filter(([queue]) => !celeryQueues.has(queue)));
    const ping = pinged.size > 0
      ? await client.ping({ expected: pinged, timeoutMs: 2000 })
      : { workers: [], unexpected: 0 };
    if (ping.unexpected > 0) {
      session.complain(unexpectedSenders(ping.unexpected, "pong", client.user), "warn");
    }
    // Only the scenario's workers: on a shared broker others answer the ping too.
    const workers = ping.workers.filter((w) => pinged.has(w.queue));
    for (const line of formatWorkers(workers)) say(line);
    for (const fn of celery) {
      const { queue, celeryName } = client.route(fn);
      const count = consumers.get(queue) ?? 0;
      say(
        `  ${fn}: Celery task ${celeryName} on ${queue}, ${count} consumer${
          count === 1 ? "" : "s"
        } (Celery workers answer no ping)`,
      );
    }
    log.info("Workers answered the ping", { workers: workers.map((w) => w.worker) });
    const startedWallMs = Date.now();
    // Events first: each waits for its runs, which tasks in flight would only slow down.
    let events: EventRecord[] = [];
    if (scenario.events?.length) {
      say(`Emitting events...`);
      const outcomes = await runScenarioEvents(opened.broker, scenario.events, {
        routes: config.functions,
        say: (line) => say(`[${new Date().toISOString().slice(11, 23)}] ${line}`),
      });
      // The terminal's verdicts come from the records the document keeps: they cannot differ.
      events = eventRecords(outcomes);
      for (const line of formatEventRecords(events)) report(line);
      log.info("Events done", { passed: events.filter((e) => e.passed).length });
    }
    const records: TaskRecord[] = new Array(tasks.length);
    let wallMs = 0;
    if (tasks.length > 0) {
      say(`Dispatching tasks...`);
      const labelWidth = Math.max(...tasks.map((t) => t.label.length));
      const listeners = [logDispatch(log)];
      if (!flags.quiet) listeners.push(createLiveStatus({ write: report, paint, labelWidth }));
      const started = performance.now();
      // Progress events serve the live status and the report's per-attempt
      // timeline; a quiet run that writes no report goes without them. Each
      // task's record is made as it ends: a big run holds records, not replies.
      await dispatchEach(
        client,
        tasks,
        (outcome, index) => records[index] = taskRecord(outcome),
        combineListeners(...listeners),
        {
          progress: !flags.quiet || outputs.html !== undefined || outputs.json !== undefined,
          window: flags.window,
        },
      );
      wallMs = performance.now() - started;
      const forged = client.ignored.unexpectedSender;
      if (forged > 0) session.complain(unexpectedSenders(forged, "reply", client.user), "warn");
    }
    const document = runDocumentOf(records, {
      config: { name: config.name, file: config.file },
      scenario: { name: scenario.name, description: scenario.description },
      broker: opened.label,
      workers,
      startedWallMs,
      finishedWallMs: Date.now(),
      wallMs,
    }, events);
    // A scenario of events alone has said its verdicts already: no task summary.
    if (tasks.length > 0) {
      say("");
      for (const line of summaryLines(document, paint)) report(line);
    }
    if (flags.json) { for (const part of documentLines(document)) session.io.out(part); }
    // Each written in pieces as it is made: a run of any size, never one string.
    const files: [string | undefined, string, () => Iterable<string>, string][] = [
      [outputs.json, "--out", () => documentFile(document), "Results saved to"],
      [outputs.junit, "--junit", () => joinLines(junitLines(document)), "JUnit XML saved to"],
      [outputs.html, "--html", () => htmlReportParts(document), "HTML report saved to"],
    ];
    for (const [path, flag, render, saved] of files) {
      if (path === undefined) continue;
      await writeOutput(path, render(), flag);
      report(`${saved} ${path}`);
      log.info(saved.replace(/ to$/, ""), { path });
    }
    return document.exit_code === 0 ? EXIT.passed : EXIT.failed;
  } finally {
    await client.close();
  }
}
