/**
 * `deno task load`: a load test. Sends many tasks to the functions of
 * test-config.yml, keeping `--concurrency` in flight or starting `--rate`
 * per second, and reports throughput, latency percentiles, errors, retries
 * and the tasks each worker did; saves the figures under results/ (or
 * `--out`).
 *
 * @module
 */

import { describeBroker } from "../client/open_broker.ts";
import { unexpectedSenders } from "../client/protocol.ts";
import { TaskClient } from "../client/task_client.ts";
import {
  BROKER_OPTIONS,
  brokerHelp,
  brokerSettings,
  checkLocal,
  checkOutputPath,
  type CliIo,
  type Command,
  CONFIG_OPTION,
  defaultResultsPath,
  DOCUMENT_OPTIONS,
  EXIT,
  EXIT_HELP_BUG,
  type OptionValues,
  REPLIES_HELP,
  REPLIES_OPTION,
  repliesFlag,
  runCommand,
  runMain,
  UsageError,
  wholeNumberFlag,
  writeOutput,
} from "./cli/mod.ts";
import { abandonedNote } from "./report/mod.ts";
import { type Config, loadConfig } from "./config/load_config.ts";
import { type LoadProgress, type LoadResult, runLoad } from "./load.ts";
import { type DurableLoadResult, runDurableLoad } from "./durable_load.ts";
import { CALLER_NAME_PATTERN } from "../core/contract/named_callers.ts";
import { dirname } from "node:path";

const HELP = `Usage: deno task load [options]

Sends many tasks to the functions of test-config.yml and reports throughput
(tasks/s), latency p50/p90/p99/max, errors, retries and the tasks each worker
did. The figures are saved to results/load_<timestamp>.json unless --out or
--no-save.

Options:
  --tasks N            how many tasks (default: 1000)
  --concurrency C      tasks in flight at once (default: 100)
  --rate R             start R tasks per second instead (open loop)
  --function NAME      only this function (default: all of the file's, in turn)
  --work-ms MS         simulated work per task, as payload work_ms (default: 0)
  --timeout-ms MS      per-task timeout, also each request's deadline
                       (default: 60000)
  --config PATH        where the functions are (default: test-config.yml)
${brokerHelp("dispatcher")}
                       If nothing answers without a URL: the embedded broker.
${REPLIES_HELP}
  --local              run on the embedded broker
  --name NAME          submit the tasks as the named caller NAME, whose calls
                       outlive this run: they are NAME.0, NAME.1, ..., their
                       results wait in the durable queue
                       replies.named.<user>.NAME, and each result collected
                       goes to --journal. Killed and run again with the same
                       name and --tasks, it submits only the tasks not yet
                       submitted and collects every result once
                       (docs/client.md, "Calls that outlive their caller")
  --journal FILE       with --name: the collected results, one JSON line each
                       (default: results/calls/NAME.jsonl)
  --wait-workers SECS  how long to wait for workers (default: 10)
  --out FILE           save the figures here instead, anywhere: missing
                       folders are made, and the path is checked first
  --no-save            do not save the figures
  --json               print the figures as one JSON document on stdout
  -h, --help           show this help

Environment:
  TASK_EVENTS=true     publish a task-sent event per request (tasks.events)
  OTEL_DENO=true       export an OpenTelemetry span per task, continued by the
                       workers (see docs/tracing.md)

Exit codes:
  0  every task succeeded
  1  some task failed or timed out
  2  bad option, configuration, credentials file or output path
  3  broker or workers unavailable
  ${EXIT_HELP_BUG}

Examples:
  deno task load --tasks 10000
  deno task load --function task_a --work-ms 500 --tasks 40 --concurrency 40
  deno task load --rate 200 --tasks 2000 --out load.json
  deno task load --name nightly --tasks 10000 --function task_a`;

const LOAD_OPTIONS = {
  tasks: { type: "string" },
  concurrency: { type: "string" },
  rate: { type: "string" },
  function: { type: "string" },
  "work-ms": { type: "string" },
  "timeout-ms": { type: "string" },
  ...CONFIG_OPTION,
  ...BROKER_OPTIONS,
  ...REPLIES_OPTION,
  local: { type: "boolean", default: false },
  name: { type: "string" },
  journal: { type: "string" },
  "wait-workers": { type: "string" },
  ...DOCUMENT_OPTIONS,
} as const;

function parseFlags(values: OptionValues<typeof LOAD_OPTIONS>) {
  if (values.rate !== undefined && values.concurrency !== undefined) {
    throw new UsageError("Cannot use --rate with --concurrency: choose one");
  }
  checkLocal(values);
  if (values.out !== undefined && values["no-save"]) {
    throw new UsageError("Cannot use --out with --no-save: choose one");
  }
  if (values.name !== undefined) {
    if (!CALLER_NAME_PATTERN.test(values.name)) {
      throw new UsageError(
        `Cannot use --name '${values.name}': give 1 to 64 lowercase letters, digits, _ and -, starting with a letter or digit`,
      );
    }
    if (values.rate !== undefined) {
      throw new UsageError(
        "Cannot use --rate with --name: a named run keeps --concurrency in flight",
      );
    }
    if (values.local) {
      throw new UsageError("Cannot use --local with --name: the embedded broker ends with the run");
    }
  } else if (values.journal !== undefined) {
    throw new UsageError("Cannot use --journal without --name: only a named run keeps one");
  }
  return {
    ...values,
    tasks: wholeNumberFlag(values.tasks, "--tasks", 1000),
    concurrency: wholeNumberFlag(values.concurrency, "--concurrency", 100),
    rate: values.rate === undefined ? undefined : wholeNumberFlag(values.rate, "--rate", 1),
    workMs: wholeNumberFlag(values["work-ms"], "--work-ms", 0, 0),
    timeoutMs: wholeNumberFlag(values["timeout-ms"], "--timeout-ms", 60_000),
    waitMs: wholeNumberFlag(values["wait-workers"], "--wait-workers", 10, 0) * 1000,
    replies: repliesFlag(values.replies),
  };
}

type LoadFlags = ReturnType<typeof parseFlags>;

interface LoadPlan {
  flags: LoadFlags;
  config: Config;
  /** The functions loaded, in turn. */
  targets: string[];
  /** Where the figures go, checked; `undefined` with --no-save. */
  out?: string;
}

/** The lines that report a finished load test. */
function formatLoad(result: LoadResult): string[] {
  const errors = Object.entries(result.errors);
  const failed = errors.reduce((sum, [, n]) => sum + n, 0);
  const { latencyMs: l } = result;
  const lines = [
    `Tasks: ${result.tasks}, succeeded: ${result.succeeded}, failed: ${failed}, timed out: ${result.timeouts}`,
    `Throughput: ${result.throughput.toFixed(1)} tasks/s over ${
      (result.durationMs / 1000).toFixed(3)
    } s`,
    `Latency (ms): p50 ${l.p50}, p90 ${l.p90}, p99 ${l.p99}, max ${l.max}, mean ${l.mean}`,
    `Longest gap between replies: ${result.longestGapMs} ms`,
    `Retries: ${result.retries}`,
  ];
  if (errors.length > 0) {
    lines.push(`Errors: ${errors.map(([type, n]) => `${type} ${n}`).join(", ")}`);
  }
  if (result.timeouts > 0) lines.push(abandonedNote(result.timeouts));
  lines.push("Per worker:");
  for (const [worker, count] of Object.entries(result.perWorker).sort()) {
    lines.push(`  ${worker}: ${count}`);
  }
  return lines;
}

function progressLine(p: LoadProgress, total: number): string {
  const rate = p.elapsedMs > 0 ? (p.done / p.elapsedMs) * 1000 : 0;
  return `  ${p.done}/${total} done, ${p.sent - p.done} in flight, ${p.errors} errors, ${
    rate.toFixed(0)
  } tasks/s`;
}

const LOAD: Command<typeof LOAD_OPTIONS, LoadFlags, LoadPlan> = {
  name: "load",
  help: HELP,
  options: LOAD_OPTIONS,
  parse: parseFlags,
  async prepare(flags) {
    // Checked before any task is sent, so that a run is never lost to a bad path.
    const out = flags["no-save"] ? undefined : flags.out ?? defaultResultsPath("load", new Date());
    if (out !== undefined) await checkOutputPath(out, "--out");
    const config = await loadConfig(flags.config);
    let targets = [...config.functions.keys()];
    if (flags.function !== undefined) {
      if (!config.functions.has(flags.function)) {
        throw new UsageError(
          `Cannot load '${flags.function}' as ${config.file} has no such function: use one of ${
            targets.join(", ")
          }`,
        );
      }
      targets = [flags.function];
    }
    return { flags, config, targets, out };
  },
  broker: ({ flags, config, targets }) => ({
    local: flags.local,
    fallback: true,
    // With a reply queue: Direct Reply-to loses the replies in flight anyway.
    reconnect: "auto",
    replies: flags.replies,
    settings: brokerSettings(flags),
    functions: targets.map((task) => {
      const { queue, protocol } = config.functions.get(task)!;
      return { task, queue, protocol };
    }),
    connectionName: "load",
  }),
  async run({ flags, config, targets, out }, opened, { io, complain }) {
    // In --json mode stdout carries the document only.
    const say = flags.json ? io.err : io.out;
    say(`Broker: ${describeBroker(opened)}`);
    const journal = flags.name === undefined
      ? undefined
      : flags.journal ?? `results/calls/${flags.name}.jsonl`;
    if (journal !== undefined) await Deno.mkdir(dirname(journal) || ".", { recursive: true });
    const client = await TaskClient.open(opened.broker, {
      functions: config.functions,
      label: opened.label,
      events: io.env("TASK_EVENTS") === "true",
      replies: opened.replies,
      name: flags.name,
      journal,
    });
    try {
      await client.waitForWorkers(targets, { timeoutMs: flags.waitMs });
      const mode = flags.rate !== undefined
        ? `${flags.rate} tasks/s`
        : `${Math.min(flags.concurrency, flags.tasks)} in flight`;
      say(`Load: ${flags.tasks} tasks of ${targets.join(", ")}, ${mode}, work_ms ${flags.workMs}`);
      const live = io.isTerminal === true && !flags.json;
      const options = {
        tasks: flags.tasks,
        concurrency: flags.concurrency,
        rate: flags.rate,
        targets,
        payload: { work_ms: flags.workMs },
        timeoutMs: flags.timeoutMs,
        onProgress: live
          ? (p: LoadProgress) =>
            Deno.stdout.writeSync(new TextEncoder().encode(`\r${progressLine(p, flags.tasks)}`))
          : undefined,
      };
      const result: LoadResult & Partial<Pick<DurableLoadResult, "resumed">> =
        flags.name === undefined || journal === undefined
          ? await runLoad(client, options)
          : await runDurableLoad(client, { ...options, name: flags.name, journal });
      if (live) io.out("");
      if (result.resumed) {
        const { collectedBefore, outstandingBefore, submitted } = result.resumed;
        say(
          `Named run ${flags.name}: ${collectedBefore} collected before, ${outstandingBefore} submitted before and collected now, ${submitted} submitted now; results in ${journal}`,
        );
      }
      const forged = client.ignored.unexpectedSender;
      if (forged > 0) complain(unexpectedSenders(forged, "reply", client.user), "warn");
      const document = {
        kind: "load",
        at: new Date().toISOString(),
        broker: opened.label,
        options: {
          tasks: flags.tasks,
          concurrency: flags.rate === undefined ? flags.concurrency : null,
          rate: flags.rate ?? null,
          functions: targets,
          work_ms: flags.workMs,
          timeout_ms: flags.timeoutMs,
          replies: opened.replies,
          ...(flags.name !== undefined && { name: flags.name, journal }),
        },
        ...result,
        // Replies no call took: a duplicate of an answered task counts as unknown.
        ignoredReplies: { ...client.ignored },
      };
      if (flags.json) io.out(JSON.stringify(document, null, 2));
      else for (const line of formatLoad(result)) io.out(line);
      if (out !== undefined) {
        await writeOutput(out, JSON.stringify(document, null, 2) + "\n", "--out");
        say(`Results saved to ${out}`);
      }
      return result.succeeded === result.tasks ? EXIT.passed : EXIT.failed;
    } finally {
      await client.close();
    }
  },
};

/** Runs the load tester with `args`; resolves with its exit code. */
export function main(args: string[], io: CliIo): Promise<number> {
  return runCommand(LOAD, args, io);
}

if (import.meta.main) await runMain(LOAD);
