/**
 * `deno task load`: a load test. Sends many tasks to the functions of
 * test-config.yml, keeping `--concurrency` in flight or starting `--rate`
 * per second, and reports throughput, latency percentiles, errors, retries
 * and the tasks each worker did; saves the figures under results/.
 *
 * @module
 */

import { BrokerUnavailableError } from "../functions/_runtime/broker/broker.ts";
import { BROKER_FLAGS, BROKER_OPTIONS, brokerFlags, brokerHelp } from "./broker_options.ts";
import { brokerLabel, openBroker, type OpenedBroker, openFailureCode } from "./open_broker.ts";
import { type CliIo, EXIT, readOptions, runCli, UsageError, wholeNumber } from "./cli.ts";
import { type LoadProgress, type LoadResult, type LoadTarget, runLoad } from "./load.ts";
import { ConfigError, loadConfig } from "./load_config.ts";
import { createPainter } from "./report.ts";
import { RpcClient } from "./rpc_client.ts";
import { checkWritable, defaultResultsPath, writeOutput } from "./output_files.ts";
import { waitForWorkers, WorkersMissingError } from "./wait_for_workers.ts";

const HELP = `Usage: deno task load [options]

Sends many tasks to the functions of test-config.yml and reports throughput
(tasks/s), latency p50/p90/p99/max, errors, retries and the tasks each worker
did. The figures are saved to results/load_<timestamp>.json.

Options:
  --tasks N            how many tasks (default: 1000)
  --concurrency C      tasks in flight at once (default: 100)
  --rate R             start R tasks per second instead (open loop)
  --function NAME      only this function (default: all of the file's, in turn)
  --work-ms MS         simulated work per task, as payload work_ms (default: 0)
  --timeout-ms MS      per-task timeout (default: 60000)
  --config PATH        where the functions are (default: test-config.yml)
${brokerHelp("dispatcher")}
                       If nothing answers without a URL: the embedded broker.
  --local              run on the embedded broker
  --wait-workers SECS  how long to wait for workers (default: 10)
  --out FILE           save the figures here instead (under results/: deno task
                       load may write nowhere else)
  --no-save            do not save the figures
  --json               print the figures as one JSON document on stdout
  -h, --help           show this help

Examples:
  deno task load --tasks 10000
  deno task load --function task_a --work-ms 500 --tasks 40 --concurrency 40
  deno task load --rate 200 --tasks 2000`;

function parseFlags(args: string[]) {
  const values = readOptions(args, {
    tasks: { type: "string" },
    concurrency: { type: "string" },
    rate: { type: "string" },
    function: { type: "string" },
    "work-ms": { type: "string" },
    "timeout-ms": { type: "string" },
    config: { type: "string", default: "test-config.yml" },
    ...BROKER_OPTIONS,
    local: { type: "boolean", default: false },
    "wait-workers": { type: "string" },
    out: { type: "string" },
    "no-save": { type: "boolean", default: false },
    json: { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  }, "load");
  if (values.rate !== undefined && values.concurrency !== undefined) {
    throw new UsageError("Cannot use --rate with --concurrency: choose one");
  }
  for (const flag of BROKER_FLAGS) {
    if (values.local && values[flag] !== undefined) {
      throw new UsageError(`Cannot use --local with --${flag}: the embedded broker needs neither`);
    }
  }
  if (values.out !== undefined && values["no-save"]) {
    throw new UsageError("Cannot use --out with --no-save: choose one");
  }
  return {
    ...values,
    tasks: wholeNumber(values.tasks, "--tasks", 1000),
    concurrency: wholeNumber(values.concurrency, "--concurrency", 100),
    rate: values.rate === undefined ? undefined : wholeNumber(values.rate, "--rate", 1),
    workMs: wholeNumber(values["work-ms"], "--work-ms", 0, 0),
    timeoutMs: wholeNumber(values["timeout-ms"], "--timeout-ms", 60_000),
    waitMs: wholeNumber(values["wait-workers"], "--wait-workers", 10, 0) * 1000,
  };
}

/** The lines that report a finished load test. */
export function formatLoad(result: LoadResult): string[] {
  const errors = Object.entries(result.errors);
  const failed = errors.reduce((sum, [, n]) => sum + n, 0);
  const { latencyMs: l } = result;
  const lines = [
    `Tasks: ${result.tasks}, succeeded: ${result.succeeded}, failed: ${failed}, timed out: ${result.timeouts}`,
    `Throughput: ${result.throughput.toFixed(1)} tasks/s over ${
      (result.durationMs / 1000).toFixed(3)
    } s`,
    `Latency (ms): p50 ${l.p50}, p90 ${l.p90}, p99 ${l.p99}, max ${l.max}, mean ${l.mean}`,
    `Retries: ${result.retries}`,
  ];
  if (errors.length > 0) {
    lines.push(`Errors: ${errors.map(([type, n]) => `${type} ${n}`).join(", ")}`);
  }
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

/** Runs the load tester with `args`; resolves with its exit code. */
export async function main(args: string[], io: CliIo, isTerminal = false): Promise<number> {
  const paint = createPainter(io.color);
  let flags;
  let targets: LoadTarget[];
  let out: string | undefined;
  try {
    flags = parseFlags(args);
    if (flags.help) {
      io.out(HELP);
      return EXIT.passed;
    }
    // Checked before any task is sent, so that a run is never lost to a bad path.
    out = flags["no-save"] ? undefined : flags.out ?? defaultResultsPath("load", new Date());
    if (out !== undefined) checkWritable(out, "the figures to");
    const config = await loadConfig(flags.config);
    targets = [...config.functions].map(([task, queue]) => ({ task, queue }));
    if (flags.function !== undefined) {
      targets = targets.filter((t) => t.task === flags!.function);
      if (targets.length === 0) {
        throw new UsageError(
          `Cannot load '${flags.function}' as ${config.file} has no such function: use one of ${
            [...config.functions.keys()].join(", ")
          }`,
        );
      }
    }
  } catch (error) {
    if (error instanceof UsageError || error instanceof ConfigError || error instanceof TypeError) {
      io.err(paint.bad(error.message));
      return EXIT.usage;
    }
    throw error;
  }
  // In --json mode stdout carries the document only.
  const say = flags.json ? io.err : io.out;

  let choice: OpenedBroker;
  try {
    choice = await openBroker({
      local: flags.local,
      flags: brokerFlags(flags),
      env: io.env,
      functions: targets,
      connectionName: "load",
    });
  } catch (error) {
    io.err(paint.bad((error as Error).message));
    return openFailureCode(error);
  }
  if (choice.notice) io.err(paint.warn(choice.notice));
  let client: RpcClient | undefined;
  try {
    say(`Broker: ${brokerLabel(choice)}`);
    await waitForWorkers(choice.broker, targets, { timeoutMs: flags.waitMs });
    client = await RpcClient.open(choice.broker);
    const mode = flags.rate !== undefined
      ? `${flags.rate} tasks/s`
      : `${Math.min(flags.concurrency, flags.tasks)} in flight`;
    say(
      `Load: ${flags.tasks} tasks of ${
        targets.map((t) => t.task).join(", ")
      }, ${mode}, work_ms ${flags.workMs}`,
    );
    const live = isTerminal && !flags.json;
    const result = await runLoad(client, {
      tasks: flags.tasks,
      concurrency: flags.concurrency,
      rate: flags.rate,
      targets,
      payload: { work_ms: flags.workMs },
      timeoutMs: flags.timeoutMs,
      onProgress: live
        ? (p) =>
          Deno.stdout.writeSync(new TextEncoder().encode(`\r${progressLine(p, flags.tasks)}`))
        : undefined,
    });
    if (live) io.out("");
    const document = {
      kind: "load",
      at: new Date().toISOString(),
      broker: choice.label,
      options: {
        tasks: flags.tasks,
        concurrency: flags.rate === undefined ? flags.concurrency : null,
        rate: flags.rate ?? null,
        functions: targets.map((t) => t.task),
        work_ms: flags.workMs,
        timeout_ms: flags.timeoutMs,
      },
      ...result,
    };
    if (flags.json) io.out(JSON.stringify(document, null, 2));
    else for (const line of formatLoad(result)) io.out(line);
    if (out !== undefined) {
      await writeOutput(out, JSON.stringify(document, null, 2) + "\n");
      say(`Results saved to ${out}`);
    }
    const failed = result.tasks - result.succeeded;
    return failed === 0 ? EXIT.passed : EXIT.failed;
  } catch (error) {
    if (error instanceof WorkersMissingError || error instanceof BrokerUnavailableError) {
      io.err(paint.bad(error.message));
      return EXIT.unavailable;
    }
    throw error;
  } finally {
    client?.close();
    await choice.broker.close();
    await choice.embedded?.stop();
  }
}

if (import.meta.main) {
  await runCli((args, io) => main(args, io, Deno.stdout.isTerminal()));
}
