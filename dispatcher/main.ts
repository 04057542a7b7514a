/**
 * `deno task dispatch`: loads a scenario from test-config.yml, checks the
 * broker and its workers, pings them, sends every task at once, shows each
 * task's progress live, gathers the replies and reports them: a summary for
 * people, and the run's JSON document, JUnit XML and HTML report as files.
 * Exit codes: 0 all tasks passed, 1 some failed, 2 bad usage, configuration
 * or output path, 3 broker or workers unavailable.
 *
 * @module
 */

import { BrokerUnavailableError } from "../functions/_runtime/broker/broker.ts";
import type { WorkerInfo } from "../functions/_runtime/contract/mod.ts";
import {
  createLogger,
  LOG_LEVELS,
  type LogFormat,
  type LogLevel,
} from "../functions/_runtime/log.ts";
import { BROKER_FLAGS, BROKER_OPTIONS, brokerFlags, brokerHelp } from "./broker_options.ts";
import { EXIT, readOptions, UsageError } from "./cli.ts";
import { combineListeners, dispatchAll } from "./dispatch_all.ts";
import { ConfigError, loadConfig, type Scenario } from "./load_config.ts";
import { renderHtmlReport } from "./html_report.ts";
import { renderJunit } from "./junit_report.ts";
import { createLiveStatus } from "./live_status.ts";
import { logDispatch } from "./log_dispatch.ts";
import { checkWritable, defaultResultsPath, RESULTS_DIR, writeOutput } from "./output_files.ts";
import { pingWorkers } from "./ping_workers.ts";
import { createPainter, formatSummary, shouldColor } from "./report.ts";
import { RpcClient } from "./rpc_client.ts";
import { brokerLabel, openBroker, type OpenedBroker, openFailureCode } from "./open_broker.ts";
import { buildRunDocument, type RunDocument } from "./run_document.ts";
import { waitForWorkers, WorkersMissingError } from "./wait_for_workers.ts";

export { EXIT };

const HELP = `Usage: deno task dispatch [options]

Runs a scenario from test-config.yml: checks the broker and that a worker
serves each function, pings the workers, sends every task at once, shows
each task's progress live, and checks each reply against the scenario's
expectations. The run's JSON document is saved under results/.

Options:
  --config PATH        configuration file (default: test-config.yml)
  --scenario NAME      scenario to run (default: the file's default_scenario)
  --list               list the file's scenarios and exit
${brokerHelp("dispatcher")}
                       If nothing answers without a URL: the embedded broker.
  --local              run on the embedded broker: each function in its own
                       Web Worker in this process, no RabbitMQ needed
  --wait-workers SECS  how long to wait for a worker on each queue (default: 10)
  --timeout-ms MS      override every task's timeout
  -q, --quiet          print only the summary: no live status
  --json               print the run's JSON document on stdout, and
                       everything else on stderr
  --out FILE           save the JSON document there (default:
                       ${RESULTS_DIR}/dispatch_<timestamp>.json)
  --no-save            do not save the JSON document
  --junit FILE         also write the run as JUnit XML
  --html FILE          also write a self-contained HTML report with a timeline
  --log-level LEVEL    level of the log on stderr (the dispatcher's task
                       events, and embedded workers): ${LOG_LEVELS.join(", ")}
                       (default: error)
  --log-format FORMAT  text or json, one object per line (default: text).
                       With json, everything on stderr is JSON lines
  -h, --help           show this help

A password in --broker is printed by 'deno task' and visible to other users of
this machine (ps): prefer a password file, or AMQP_URL.

deno task dispatch may write only under ${RESULTS_DIR}/, so give --out, --junit
and --html paths there (or run 'deno run --allow-write=...' yourself).

Exit codes: 0 all tasks passed, 1 some task failed or timed out,
2 bad option, configuration, credentials file or output path, 3 broker or
workers unavailable.

Examples:
  deno task dispatch
  deno task dispatch --scenario burst --html ${RESULTS_DIR}/burst.html
  deno task dispatch --json --no-save | jq .summary
  deno task dispatch --broker amqp://dispatcher@localhost:5673
  deno task dispatch --broker amqps://dispatcher@broker.example:5671 \\
    --password-file dispatcher.password --ca-file ca.pem
  deno task dispatch --local --scenario recovers_after_retries`;

/** Where the dispatcher writes and what it reads from its environment. */
export interface DispatcherIo {
  out: (line: string) => void;
  err: (line: string) => void;
  env: (name: string) => string | undefined;
  /** Whether to colour what goes to stdout and to stderr. */
  color: { out: boolean; err: boolean };
}

function positiveNumber(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const number = Number(value);
  if (!Number.isFinite(number) || number <= 0) {
    throw new UsageError(`Cannot use ${flag} '${value}': give a number greater than 0`);
  }
  return number;
}

/** Every option of `deno task dispatch`. */
export const DISPATCH_OPTIONS = {
  config: { type: "string", default: "test-config.yml" },
  scenario: { type: "string" },
  list: { type: "boolean", default: false },
  ...BROKER_OPTIONS,
  local: { type: "boolean", default: false },
  "wait-workers": { type: "string" },
  "timeout-ms": { type: "string" },
  quiet: { type: "boolean", short: "q", default: false },
  json: { type: "boolean", default: false },
  out: { type: "string" },
  "no-save": { type: "boolean", default: false },
  junit: { type: "string" },
  html: { type: "string" },
  "log-level": { type: "string", default: "error" },
  "log-format": { type: "string", default: "text" },
  help: { type: "boolean", short: "h", default: false },
} as const;

function parseFlags(args: string[]) {
  const values = readOptions(args, DISPATCH_OPTIONS, "dispatch");
  for (const flag of BROKER_FLAGS) {
    if (values.local && values[flag] !== undefined) {
      throw new UsageError(`Cannot use --local with --${flag}: the embedded broker needs neither`);
    }
  }
  if (values["no-save"] && values.out !== undefined) {
    throw new UsageError("Cannot use --out with --no-save: choose one");
  }
  const logLevel = values["log-level"] as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new UsageError(
      `Cannot use --log-level '${logLevel}': use one of ${LOG_LEVELS.join(", ")}`,
    );
  }
  const logFormat = values["log-format"] as LogFormat;
  if (logFormat !== "text" && logFormat !== "json") {
    throw new UsageError(`Cannot use --log-format '${logFormat}': use text or json`);
  }
  for (const flag of ["out", "junit", "html"] as const) {
    if (values[flag] === "") throw new UsageError(`Cannot use --${flag} '': give a file path`);
  }
  const waitSeconds = positiveNumber(values["wait-workers"], "--wait-workers") ?? 10;
  const timeoutMs = positiveNumber(values["timeout-ms"], "--timeout-ms");
  return { ...values, logLevel, logFormat, waitMs: waitSeconds * 1000, timeoutMs };
}

function pickScenario(
  scenarios: Map<string, Scenario>,
  name: string | undefined,
  fallback: string,
  file: string,
): Scenario {
  const chosen = scenarios.get(name ?? fallback);
  if (!chosen) {
    throw new UsageError(
      `Cannot run scenario '${name}' as ${file} has no such scenario: use one of ${
        [...scenarios.keys()].join(", ")
      }`,
    );
  }
  return chosen;
}

/** The files a run writes, each checked before anything is sent. */
interface Outputs {
  json?: string;
  junit?: string;
  html?: string;
}

function planOutputs(flags: ReturnType<typeof parseFlags>, now: Date): Outputs {
  const outputs: Outputs = {
    json: flags["no-save"] ? undefined : flags.out ?? defaultResultsPath("dispatch", now),
    junit: flags.junit,
    html: flags.html,
  };
  const what = { json: "the JSON document to", junit: "JUnit XML to", html: "the HTML report to" };
  for (const [key, path] of Object.entries(outputs)) {
    if (path === undefined) continue;
    try {
      checkWritable(path, what[key as keyof Outputs]);
    } catch (error) {
      throw new UsageError((error as Error).message);
    }
  }
  return outputs;
}

function uptime(ms: number): string {
  const total = Math.floor(ms / 1000);
  const [h, m, s] = [Math.floor(total / 3600), Math.floor(total / 60) % 60, total % 60];
  return h > 0 ? `${h}h ${m}m` : m > 0 ? `${m}m ${s}s` : `${s}s`;
}

/** The lines naming the workers that answered the ping. */
export function formatWorkers(workers: WorkerInfo[]): string[] {
  return [
    `Active workers: ${workers.length}`,
    ...workers.map((w) =>
      `  ${w.worker} (${w.function} on ${w.queue}, up ${
        uptime(w.uptime_ms)
      }, ${w.tasks_done} tasks done, ${w.in_flight} in flight)`
    ),
  ];
}

/** Runs the dispatcher with `args`; resolves with its exit code. */
export async function main(args: string[], io: DispatcherIo): Promise<number> {
  let flags;
  try {
    flags = parseFlags(args);
  } catch (error) {
    io.err(createPainter(io.color.err).bad((error as Error).message));
    return EXIT.usage;
  }
  if (flags.help) {
    io.out(HELP);
    return EXIT.passed;
  }

  // Where each kind of output goes. The report (header, live status,
  // summary) is for people: on stdout, or on stderr when stdout carries the
  // JSON document. With --log-format json stderr carries JSON lines only, so
  // problems become log lines and a report bound for stderr is left out.
  const jsonLogs = flags.logFormat === "json";
  const log = createLogger({
    level: flags.logLevel,
    format: flags.logFormat,
    write: io.err,
    fields: { component: "dispatcher" },
  });
  const problems = createLogger({ level: "warn", format: "json", write: io.err });
  const errPaint = createPainter(io.color.err);
  const complain = (message: string, level: "warn" | "error" = "error") => {
    if (jsonLogs) problems[level](message, { component: "dispatcher" });
    else io.err(level === "error" ? errPaint.bad(message) : errPaint.warn(message));
  };
  const reportToErr = flags.json;
  const report = reportToErr ? (jsonLogs ? () => {} : io.err) : io.out;
  const paint = createPainter(reportToErr ? io.color.err : io.color.out);
  const say = flags.quiet ? () => {} : report;

  let config;
  let scenario: Scenario;
  let outputs: Outputs;
  try {
    config = await loadConfig(flags.config);
    if (flags.list) {
      for (const [name, s] of config.scenarios) {
        const mark = name === config.defaultScenario ? " (default)" : "";
        io.out(`${name}${mark}: ${s.tasks.length} tasks. ${s.description}`);
      }
      return EXIT.passed;
    }
    scenario = pickScenario(config.scenarios, flags.scenario, config.defaultScenario, config.file);
    outputs = planOutputs(flags, new Date());
  } catch (error) {
    if (error instanceof ConfigError || error instanceof UsageError) {
      complain(error.message);
      return EXIT.usage;
    }
    throw error;
  }
  const tasks = flags.timeoutMs === undefined
    ? scenario.tasks
    : scenario.tasks.map((task) => ({ ...task, timeoutMs: flags.timeoutMs! }));
  const needed = [
    ...new Map(tasks.map((t) => [t.task, { task: t.task, queue: t.queue }])).values(),
  ];

  say(`Loaded config: ${config.name} (${config.file})`);
  say(`Scenario: ${scenario.name}${scenario.description ? ` - ${scenario.description}` : ""}`);
  say(`Expected workers: ${needed.length}`);

  let choice: OpenedBroker;
  try {
    choice = await openBroker({
      local: flags.local,
      flags: brokerFlags(flags),
      env: io.env,
      functions: needed,
      embeddedOptions: { logLevel: flags.logLevel, logFormat: flags.logFormat },
    });
  } catch (error) {
    complain((error as Error).message);
    return openFailureCode(error);
  }
  if (choice.notice) complain(choice.notice, "warn");
  say(`Broker: ${brokerLabel(choice)}`);
  log.info("Connected", { broker: choice.label });

  let client: RpcClient | undefined;
  let document: RunDocument;
  try {
    const consumers = await waitForWorkers(choice.broker, needed, {
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
        needed.map(({ task, queue }) => `${task} on ${queue} (${consumers.get(queue)})`).join(", ")
      }`,
    );
    client = await RpcClient.open(choice.broker);
    // Only the scenario's workers: on a shared broker others answer the ping too.
    const workers = (await pingWorkers(client, { expected: consumers, timeoutMs: 2000 }))
      .filter((w) => consumers.has(w.queue));
    for (const line of formatWorkers(workers)) say(line);
    log.info("Workers answered the ping", { workers: workers.map((w) => w.worker) });
    say(`Dispatching tasks...`);
    const labelWidth = Math.max(...tasks.map((t) => t.label.length));
    const listeners = [logDispatch(log)];
    if (!flags.quiet) listeners.push(createLiveStatus({ write: report, paint, labelWidth }));
    const startedWallMs = Date.now();
    const started = performance.now();
    // Progress events serve the live status and the report's per-attempt
    // timeline; a quiet run that writes no report goes without them.
    const outcomes = await dispatchAll(client, tasks, combineListeners(...listeners), {
      progress: !flags.quiet || outputs.html !== undefined || outputs.json !== undefined,
    });
    const wallMs = performance.now() - started;
    document = buildRunDocument(outcomes, {
      config: { name: config.name, file: config.file },
      scenario: { name: scenario.name, description: scenario.description },
      broker: choice.label,
      workers,
      startedWallMs,
      finishedWallMs: Date.now(),
      wallMs,
    });
  } catch (error) {
    if (error instanceof WorkersMissingError || error instanceof BrokerUnavailableError) {
      complain(error.message);
      return EXIT.unavailable;
    }
    throw error;
  } finally {
    client?.close();
    await choice.broker.close();
    await choice.embedded?.stop();
  }

  say("");
  for (const line of formatSummary(document, paint)) report(line);
  if (flags.json) io.out(JSON.stringify(document, null, 2));
  const files: [string | undefined, () => string, string][] = [
    [outputs.json, () => JSON.stringify(document, null, 2) + "\n", "Results saved to"],
    [outputs.junit, () => renderJunit(document), "JUnit XML saved to"],
    [outputs.html, () => renderHtmlReport(document), "HTML report saved to"],
  ];
  for (const [path, render, saved] of files) {
    if (path === undefined) continue;
    try {
      await writeOutput(path, render());
    } catch (error) {
      complain((error as Error).message);
      return EXIT.usage;
    }
    report(`${saved} ${path}`);
    log.info(saved.replace(/ to$/, ""), { path });
  }
  return document.exit_code === 0 ? EXIT.passed : EXIT.failed;
}

if (import.meta.main) {
  const noColor = Deno.env.get("NO_COLOR");
  const code = await main(Deno.args, {
    out: (line) => console.log(line),
    err: (line) => console.error(line),
    env: (name) => Deno.env.get(name),
    color: {
      out: shouldColor(Deno.stdout.isTerminal(), noColor),
      err: shouldColor(Deno.stderr.isTerminal(), noColor),
    },
  });
  Deno.exit(code);
}
