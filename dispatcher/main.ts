/**
 * `deno task dispatch`: loads a scenario from test-config.yml, checks the
 * broker and its workers, sends every task at once, gathers the replies and
 * reports. Exit codes: 0 all tasks passed, 1 some failed, 2 bad usage or
 * configuration, 3 broker or workers unavailable.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { BrokerUnavailableError } from "../functions/_runtime/broker.ts";
import type { LogLevel } from "../functions/_runtime/log.ts";
import { LOG_LEVELS } from "../functions/_runtime/log.ts";
import { SecretFileError } from "../functions/_runtime/secret_file.ts";
import { type BrokerChoice, chooseBroker, LOCAL_AMQP_URL } from "./choose_broker.ts";
import { connectRabbitMq } from "./connect_rabbitmq.ts";
import { dispatchAll } from "./dispatch_all.ts";
import { startEmbedded } from "./embedded.ts";
import { ConfigError, loadConfig, type Scenario } from "./load_config.ts";
import { createPainter, formatOutcome, formatSummary, summarize } from "./report.ts";
import { type CliIo, EXIT, runCli } from "./cli.ts";
import { resolveBroker, type ResolvedBroker, STACK_AMQP_URL } from "./resolve_broker.ts";
import { RpcClient } from "./rpc_client.ts";
import { waitForWorkers, WorkersMissingError } from "./wait_for_workers.ts";

export { EXIT };

const HELP = `Usage: deno task dispatch [options]

Runs a scenario from test-config.yml: checks the broker and that a worker
serves each function, sends every task at once, and checks each reply
against the scenario's expectations.

Options:
  --config PATH        configuration file (default: test-config.yml)
  --scenario NAME      scenario to run (default: the file's default_scenario)
  --list               list the file's scenarios and exit
  --broker URL         RabbitMQ URL, e.g. amqp://dispatcher@localhost:5672
                       (default: $AMQP_URL or the URL in $AMQP_URL_FILE; with
                       none, ${STACK_AMQP_URL} when the compose
                       stack's secrets/dispatcher.password exists, else
                       ${LOCAL_AMQP_URL}; if nothing
                       answers there, the embedded broker)
  --password-file PATH file holding the password of the URL's user (default:
                       $AMQP_PASSWORD_FILE; for the user dispatcher, the
                       compose stack's, in $SECRETS_DIR or secrets/)
  --ca-file PATH       amqps://: CA certificate (PEM) that signs the broker's
                       certificate (default: $AMQP_CA_FILE, else the system's)
  --cert-file PATH     amqps://: client certificate (PEM), for brokers that ask
                       for one (default: $AMQP_CERT_FILE); with --key-file
  --key-file PATH      its private key (default: $AMQP_KEY_FILE)
  --local              run on the embedded broker: each function in its own
                       Web Worker in this process, no RabbitMQ needed
  --wait-workers SECS  how long to wait for a worker on each queue (default: 10)
  --timeout-ms MS      override every task's timeout
  --log-level LEVEL    embedded workers' log level: ${LOG_LEVELS.join(", ")}
                       (default: error)
  -h, --help           show this help

A password in --broker is printed by 'deno task' and visible to other users of
this machine (ps): prefer a password file, or AMQP_URL.

Exit codes: 0 all tasks passed, 1 some task failed or timed out,
2 bad option, configuration or credentials file, 3 broker or workers unavailable.

Examples:
  deno task dispatch
  deno task dispatch --scenario burst
  deno task dispatch --broker amqp://dispatcher@localhost:5673
  deno task dispatch --broker amqps://dispatcher@broker.example:5671 \\
    --password-file dispatcher.password --ca-file ca.pem
  deno task dispatch --local --scenario recovers_after_retries`;

class UsageError extends Error {}

function positiveNumber(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const number = Number(value);
  if (!Number.isFinite(number) || number <= 0) {
    throw new UsageError(`Cannot use ${flag} '${value}': give a number greater than 0`);
  }
  return number;
}

function parseFlags(args: string[]) {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        config: { type: "string", default: "test-config.yml" },
        scenario: { type: "string" },
        list: { type: "boolean", default: false },
        broker: { type: "string" },
        "password-file": { type: "string" },
        "ca-file": { type: "string" },
        "cert-file": { type: "string" },
        "key-file": { type: "string" },
        local: { type: "boolean", default: false },
        "wait-workers": { type: "string" },
        "timeout-ms": { type: "string" },
        "log-level": { type: "string", default: "error" },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (error) {
    throw new UsageError(
      `Cannot read the options: ${(error as Error).message}. See 'deno task dispatch --help'`,
    );
  }
  const values = parsed.values;
  for (const flag of ["broker", "password-file", "ca-file", "cert-file", "key-file"] as const) {
    if (values.local && values[flag] !== undefined) {
      throw new UsageError(`Cannot use --local with --${flag}: the embedded broker needs neither`);
    }
  }
  const logLevel = values["log-level"] as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new UsageError(
      `Cannot use --log-level '${logLevel}': use one of ${LOG_LEVELS.join(", ")}`,
    );
  }
  const waitSeconds = positiveNumber(values["wait-workers"], "--wait-workers") ?? 10;
  const timeoutMs = positiveNumber(values["timeout-ms"], "--timeout-ms");
  return { ...values, logLevel, waitMs: waitSeconds * 1000, timeoutMs };
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

/** Runs the dispatcher with `args`; resolves with its exit code. */
export async function main(args: string[], io: CliIo): Promise<number> {
  const paint = createPainter(io.color);
  let flags;
  try {
    flags = parseFlags(args);
  } catch (error) {
    io.err(paint.bad((error as Error).message));
    return EXIT.usage;
  }
  if (flags.help) {
    io.out(HELP);
    return EXIT.passed;
  }

  let config;
  let scenario: Scenario;
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
  } catch (error) {
    if (error instanceof ConfigError || error instanceof UsageError) {
      io.err(paint.bad(error.message));
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

  io.out(`Loaded config: ${config.name} (${config.file})`);
  io.out(`Scenario: ${scenario.name}${scenario.description ? ` - ${scenario.description}` : ""}`);
  io.out(`Expected workers: ${needed.length}`);

  let target: ResolvedBroker | undefined;
  let choice: BrokerChoice;
  try {
    if (!flags.local) {
      target = await resolveBroker({
        broker: flags.broker,
        passwordFile: flags["password-file"],
        caFile: flags["ca-file"],
        certFile: flags["cert-file"],
        keyFile: flags["key-file"],
      }, { env: io.env, root: new URL("../", import.meta.url) });
    }
    choice = await chooseBroker({
      local: flags.local,
      url: target?.explicit ? target.url : undefined,
      defaultUrl: target?.url,
      functions: needed,
      connect: (url, timeoutMs) => connectRabbitMq(url, timeoutMs, { tls: target?.tls }),
      startEmbedded,
      embeddedOptions: { logLevel: flags.logLevel },
    });
  } catch (error) {
    io.err(paint.bad((error as Error).message));
    return error instanceof TypeError || error instanceof SecretFileError
      ? EXIT.usage
      : EXIT.unavailable;
  }
  if (choice.notice) io.err(paint.warn(choice.notice));
  const credentials = !choice.embedded && target?.passwordFile
    ? ` (password from ${target.passwordFile})`
    : "";
  io.out(`Broker: ${choice.label}${credentials}`);
  if (choice.embedded && !choice.embedded.sandboxed) {
    io.err(paint.warn(
      "Functions run with this process's permissions: add --unstable-worker-options to sandbox them",
    ));
  }

  let client: RpcClient | undefined;
  try {
    const consumers = await waitForWorkers(choice.broker, needed, {
      timeoutMs: flags.waitMs,
      onWaiting: (missing) =>
        io.out(
          `Waiting up to ${flags.waitMs / 1000} s for workers: ${
            missing.map((m) => m.task).join(", ")
          }`,
        ),
    });
    io.out(
      `Workers ready: ${
        needed.map(({ task, queue }) => `${task} on ${queue} (${consumers.get(queue)})`).join(", ")
      }`,
    );
    client = await RpcClient.open(choice.broker);
    io.out(`Dispatching tasks...`);
    const started = performance.now();
    const outcomes = await dispatchAll(client, tasks, {
      onDone: (outcome) => io.out(formatOutcome(outcome, paint)),
    });
    const wallMs = performance.now() - started;
    const summary = summarize(outcomes, wallMs);
    io.out("");
    for (const line of formatSummary(summary, paint)) io.out(line);
    return summary.failed === 0 ? EXIT.passed : EXIT.failed;
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

if (import.meta.main) await runCli(main);
