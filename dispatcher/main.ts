/**
 * `deno task dispatch`: loads a scenario from test-config.yml, checks the
 * broker and its workers, pings them, sends every task at once, shows each
 * task's progress live, gathers the replies and reports them: a summary for
 * people, and the run's JSON document, JUnit XML and HTML report as files
 * (`dispatch_run.ts`). Exit codes: 0 all tasks and events passed, 1 some
 * failed, 2 bad usage, configuration or output path, 3 broker or workers
 * unavailable, 70 a bug.
 *
 * @module
 */

import { createLogger, LOG_LEVELS } from "../core/log.ts";
import {
  brokerHelp,
  brokerSettings,
  checkOutputPath,
  type CliIo,
  type Command,
  type Complain,
  defaultResultsPath,
  EXIT,
  EXIT_HELP_BUG,
  REPLIES_HELP,
  RESULTS_DIR,
  runCommand,
  runMain,
  UsageError,
} from "./cli/mod.ts";
import { loadConfig, type Scenario } from "./config/load_config.ts";
import { announce, type DispatchPlan, type Outputs, runDispatch } from "./dispatch_run.ts";
import { DISPATCH_OPTIONS, type DispatchFlags, parseFlags } from "./dispatch_flags.ts";
import { DEFAULT_STREAM_WINDOW } from "../client/stream.ts";

const HELP = `Usage: deno task dispatch [options]

Runs a scenario from test-config.yml: checks the broker and that a worker
serves each function, pings the workers, sends every task at once (up to
--window of them), shows each task's progress live, and checks each reply against the scenario's
expectations. Replies and pongs count only from each function's broker user
(its 'user' in functions/registry.yaml, default its name) or the dispatcher's own.
The run's JSON document is saved under results/ unless --out or --no-save.

Options:
  --config PATH        configuration file (default: test-config.yml)
  --scenario NAME      scenario to run (default: the file's default_scenario)
  --list               list the file's scenarios and exit
${brokerHelp("dispatcher")}
                       If nothing answers without a URL: the embedded broker.
${REPLIES_HELP}
  --local              run on the embedded broker: each function sandboxed in
                       a process of its own, no RabbitMQ needed
  --wait-workers SECS  how long to wait for a worker on each queue (default: 10)
  --timeout-ms MS      override every task's timeout (also each request's
                       deadline: no worker starts it after that)
  --window N           tasks in flight at once: a bigger scenario sends the
                       next as one ends, and each task's timeout counts from
                       when it is sent (default: ${DEFAULT_STREAM_WINDOW})
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

Output files may go anywhere: missing folders are made, and every path is
checked before anything is sent.

A password in --broker is printed by 'deno task' and visible to other users of
this machine (ps): prefer a password file, or AMQP_URL.

Environment:
  TASK_EVENTS=true     publish a task-sent event per request to the
                       tasks.events exchange (deno task dashboard shows them)
  OTEL_DENO=true       export an OpenTelemetry span per task, whose trace the
                       workers continue (standard OTEL_* variables; see
                       docs/tracing.md)

Exit codes:
  0  all tasks and events passed
  1  some task failed or timed out, or some event's runs did not end as expected
  2  bad option, configuration, credentials file or output path
  3  broker or workers unavailable
  ${EXIT_HELP_BUG}

Examples:
  deno task dispatch
  deno task dispatch --scenario burst --junit report.xml --html report.html
  deno task dispatch --json --no-save | jq .summary
  deno task dispatch --broker amqp://dispatcher@localhost:5673
  deno task dispatch --broker amqps://dispatcher@broker.example:5671 \\
    --password-file dispatcher.password --ca-file ca.pem
  deno task dispatch --local --scenario recovers_after_retries`;

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

/** Checks every file the run writes, before anything is sent. */
async function planOutputs(flags: DispatchFlags, now: Date): Promise<Outputs> {
  const outputs: Outputs = {
    json: flags["no-save"] ? undefined : flags.out ?? defaultResultsPath("dispatch", now),
    junit: flags.junit,
    html: flags.html,
  };
  const seen = new Map<string, string>();
  for (const [key, path] of Object.entries(outputs)) {
    if (path === undefined) continue;
    const flag = key === "json" ? "--out" : `--${key}`;
    const other = seen.get(path);
    if (other) {
      throw new UsageError(
        `Cannot use '${path}' for both ${other} and ${flag}: give each its own file`,
      );
    }
    seen.set(path, flag);
    await checkOutputPath(path, flag);
  }
  return outputs;
}

/**
 * With --log-format json stderr carries JSON lines only, so problems
 * become log lines.
 */
function complainer(flags: DispatchFlags, io: CliIo): Complain | undefined {
  if (flags.logFormat !== "json") return undefined;
  const problems = createLogger({ level: "warn", format: "json", write: io.err });
  return (message, level = "error") => problems[level](message, { component: "dispatcher" });
}

const DISPATCH: Command<typeof DISPATCH_OPTIONS, DispatchFlags, DispatchPlan> = {
  name: "dispatch",
  help: HELP,
  options: DISPATCH_OPTIONS,
  parse: parseFlags,
  complainer,
  async prepare(flags, session) {
    const config = await loadConfig(flags.config);
    if (flags.list) {
      for (const [name, s] of config.scenarios) {
        const mark = name === config.defaultScenario ? " (default)" : "";
        const events = s.events
          ? `, ${s.events.length} event${s.events.length === 1 ? "" : "s"}`
          : "";
        session.io.out(`${name}${mark}: ${s.tasks.length} tasks${events}. ${s.description}`);
      }
      return EXIT.passed;
    }
    const scenario = pickScenario(
      config.scenarios,
      flags.scenario,
      config.defaultScenario,
      config.file,
    );
    const outputs = await planOutputs(flags, new Date());
    const plan = { flags, config, scenario, outputs };
    announce(plan, session.io);
    return plan;
  },
  broker: ({ flags, config, scenario }) => ({
    local: flags.local,
    fallback: true,
    // With a reply queue: Direct Reply-to loses the replies in flight anyway.
    reconnect: "auto",
    replies: flags.replies,
    settings: brokerSettings(flags),
    functions: [
      ...new Map(
        [
          ...scenario.tasks.map((t) => t.task),
          ...(scenario.events ?? []).flatMap((e) => e.expectRuns.map((run) => run.function)),
        ].map((task) => [task, {
          task,
          queue: config.functions.get(task)?.queue ?? "",
          protocol: config.functions.get(task)?.protocol,
          ...config.subscriptions?.get(task),
        }]),
      ).values(),
    ],
    embeddedOptions: { logLevel: flags.logLevel, logFormat: flags.logFormat },
  }),
  run: runDispatch,
};

/** Runs `deno task dispatch` with `args`; resolves with its exit code. */
export function main(args: string[], io: CliIo): Promise<number> {
  return runCommand(DISPATCH, args, io);
}

if (import.meta.main) await runMain(DISPATCH);
