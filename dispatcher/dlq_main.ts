/**
 * `deno task dlq`: lists the dead letters of the functions' queues, and with
 * `--replay` sends them back. Exit codes: 0 done, 2 bad usage or
 * configuration, 3 broker unavailable.
 *
 * @module
 */

import { type Broker, BrokerUnavailableError } from "../functions/_runtime/broker/broker.ts";
import { maskUrl } from "../functions/_runtime/broker/amqp_url.ts";
import { deadLetterQueueOf } from "../functions/_runtime/contract/mod.ts";
import { SecretFileError } from "../functions/_runtime/broker/secret_file.ts";
import { BROKER_OPTIONS, brokerFlags, brokerHelp } from "./broker_options.ts";
import { connectRabbitMq } from "./connect_rabbitmq.ts";
import { resolveBroker } from "./resolve_broker.ts";
import {
  type DeadLetter,
  listDeadLetters,
  replayDeadLetters,
  type ReplayResult,
} from "./dead_letters.ts";
import { ConfigError, loadConfig } from "./load_config.ts";
import { type CliIo, EXIT, readOptions, runCli, UsageError, wholeNumber } from "./cli.ts";
import { createPainter } from "./report.ts";

const HELP = `Usage: deno task dlq [options]

Lists the dead letters of each function's queue (<queue>.dlq): requests a
worker refused or gave up on, with the reason, the error, the attempts and
the original body. Listing changes nothing. With --replay, each letter goes
back to its function's queue as a new request (attempts start again at 1)
and leaves the dead-letter queue once the broker confirmed the copy.

Options:
  --function NAME   only this function's dead letters (from --config)
  --queue NAME      only this queue's dead letters (queue_a, not queue_a.dlq)
  --config PATH     where the functions and queues are (default: test-config.yml)
${brokerHelp("admin")}
  --reason REASON   only letters dead-lettered for REASON: rejected, exhausted
                    or non_retryable
  --limit N         at most N letters per queue (default: 100 to list, all to replay)
  --replay          send the letters back to their queues
  --json            print one JSON document on stdout instead of text
  -h, --help        show this help

Examples:
  deno task dlq
  deno task dlq --function task_b --limit 5
  deno task dlq --queue queue_b --reason exhausted --replay`;

const REASONS = ["rejected", "exhausted", "non_retryable"];

function parseFlags(args: string[]) {
  const values = readOptions(args, {
    function: { type: "string" },
    queue: { type: "string" },
    config: { type: "string", default: "test-config.yml" },
    ...BROKER_OPTIONS,
    reason: { type: "string" },
    limit: { type: "string" },
    replay: { type: "boolean", default: false },
    json: { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  }, "dlq");
  if (values.function !== undefined && values.queue !== undefined) {
    throw new UsageError("Cannot use --function with --queue: choose one");
  }
  if (values.reason !== undefined && !REASONS.includes(values.reason)) {
    throw new UsageError(
      `Cannot use --reason '${values.reason}': use one of ${REASONS.join(", ")}`,
    );
  }
  if (values.queue?.endsWith(".dlq")) {
    throw new UsageError(
      `Cannot use --queue '${values.queue}': name the function's queue, '${
        values.queue.slice(0, -4)
      }'`,
    );
  }
  return {
    ...values,
    limit: wholeNumber(values.limit, "--limit", values.replay ? Number.MAX_SAFE_INTEGER : 100),
  };
}

async function queuesToRead(flags: ReturnType<typeof parseFlags>): Promise<string[]> {
  if (flags.queue !== undefined) return [flags.queue];
  const config = await loadConfig(flags.config);
  if (flags.function === undefined) return [...config.functions.values()];
  const queue = config.functions.get(flags.function);
  if (queue === undefined) {
    throw new UsageError(
      `Cannot read the dead letters of '${flags.function}' as ${config.file} has no such function: use one of ${
        [...config.functions.keys()].join(", ")
      }`,
    );
  }
  return [queue];
}

function formatLetter(letter: DeadLetter, index: number): string[] {
  const details = [
    letter.attempts !== null ? `attempts: ${letter.attempts}` : undefined,
    letter.worker ? `worker: ${letter.worker}` : undefined,
    letter.at ? `at: ${letter.at}` : undefined,
  ].filter(Boolean).join(", ");
  const body = letter.body.length > 200 ? `${letter.body.slice(0, 200)}...` : letter.body;
  return [
    `  #${index + 1} ${letter.reason} ${letter.errorType}: ${letter.errorMessage} (${details})`,
    `     task ${letter.taskId ?? "(no id)"}, body: ${body}`,
  ];
}

/** Runs the dead-letter tool with `args`; resolves with its exit code. */
export async function main(args: string[], io: CliIo): Promise<number> {
  const paint = createPainter(io.color);
  let flags;
  let queues: string[];
  try {
    flags = parseFlags(args);
    if (flags.help) {
      io.out(HELP);
      return EXIT.passed;
    }
    queues = await queuesToRead(flags);
  } catch (error) {
    if (error instanceof UsageError || error instanceof ConfigError) {
      io.err(paint.bad(error.message));
      return EXIT.usage;
    }
    throw error;
  }
  let url: string;
  let broker: Broker;
  try {
    // Dead letters are the admin's: in the compose stack, no other user may read them.
    const target = await resolveBroker(brokerFlags(flags), {
      env: io.env,
      root: new URL("../", import.meta.url),
      user: "admin",
    });
    url = target.url;
    broker = await connectRabbitMq(url, 5000, { tls: target.tls, connectionName: "dlq" });
  } catch (error) {
    io.err(paint.bad((error as Error).message));
    return error instanceof TypeError || error instanceof SecretFileError
      ? EXIT.usage
      : EXIT.unavailable;
  }
  const report: Record<string, unknown>[] = [];
  try {
    if (!flags.json) io.out(`Broker: ${maskUrl(url)}`);
    for (const queue of queues) {
      const dlq = deadLetterQueueOf(queue);
      const info = await broker.inspectQueue(dlq);
      if (!info) {
        report.push({ queue: dlq, total: 0, letters: [] });
        if (!flags.json) io.out(`${dlq}: does not exist (no worker for ${queue} has started)`);
        continue;
      }
      const options = { limit: flags.limit, reason: flags.reason };
      if (flags.replay) {
        const result: ReplayResult = await replayDeadLetters(broker, dlq, options);
        report.push({ queue: dlq, total: info.messages, ...result });
        if (!flags.json) {
          io.out(
            `${dlq}: replayed ${result.replayed.length} of ${info.messages} to ${queue}` +
              (result.skipped ? ` (${result.skipped} left: other reasons)` : ""),
          );
        }
      } else {
        const letters = await listDeadLetters(broker, dlq, options);
        report.push({ queue: dlq, total: info.messages, letters });
        if (!flags.json) {
          const shown = letters.length < info.messages ? ` (showing ${letters.length})` : "";
          io.out(`${dlq}: ${info.messages} dead letter${info.messages === 1 ? "" : "s"}${shown}`);
          letters.forEach((letter, i) => formatLetter(letter, i).forEach((line) => io.out(line)));
        }
      }
    }
    if (flags.json) io.out(JSON.stringify({ broker: maskUrl(url), queues: report }, null, 2));
    return EXIT.passed;
  } catch (error) {
    if (error instanceof BrokerUnavailableError) {
      io.err(paint.bad(error.message));
      return EXIT.unavailable;
    }
    throw error;
  } finally {
    await broker.close();
  }
}

if (import.meta.main) await runCli(main);
