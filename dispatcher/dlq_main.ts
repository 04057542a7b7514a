/**
 * `deno task dlq`: lists the dead letters of the functions' queues, and with
 * `--replay` sends them back. Connects as the compose stack's least
 * privileged `operator` user by default. Exit codes: 0 done, 1 some letter
 * refused on replay, 2 bad usage or configuration, 3 broker unavailable, 70
 * a bug.
 *
 * @module
 */

import { DEAD_LETTER_REASONS, type DeadLetter, deadLetterQueueOf } from "../core/contract/mod.ts";
import {
  BROKER_OPTIONS,
  brokerHelp,
  brokerSettings,
  type CliIo,
  type Command,
  CONFIG_OPTION,
  createPainter,
  escapeControls,
  escapeJsonControls,
  EXIT,
  EXIT_HELP_BUG,
  EXIT_HELP_UNAVAILABLE,
  EXIT_HELP_USAGE,
  JSON_HELP_OPTIONS,
  type OptionValues,
  runCommand,
  runMain,
  UsageError,
  wholeNumberFlag,
} from "./cli/mod.ts";
import { ConfigError } from "../core/config_error.ts";
import { OPERATOR_USER } from "../core/contract/users.ts";
import { loadConfig } from "./config/load_config.ts";
import { letterPolicy } from "./dead_letter_trust.ts";
import { listDeadLetters, type RefusedLetter, replayDeadLetters } from "./dead_letters.ts";

/** The compose stack's user that reads dead letters: it may read `*.dlq` and publish, no more. */

const HELP = `Usage: deno task dlq [options]

Lists the dead letters of each function's queue (<queue>.dlq): requests a
worker refused or gave up on, and those the broker dropped (expired, or
delivered too often), with the reason, the error, the attempts or deliveries
and the original body. Listing changes nothing.

With --replay, each letter goes back to the queue its dead-letter queue
belongs to (never where its headers say) as a new request (attempts start
again at 1), and leaves the dead-letter queue once the broker confirmed the
copy. A letter is replayed only if it proves its origin: written by the
function's own workers (its user_id) for an allowed sender (x-dlq-sender:
dispatcher, admin, operator or the function's user), or dead-lettered by the
broker with an allowed sender's user_id. Others stay, and are reported.

Options:
  --function NAME   only this function's dead letters (from --config)
  --queue NAME      only this queue's dead letters (queue_a, not queue_a.dlq)
  --config PATH     where the functions, queues and workers' users are
                    (default: test-config.yml)
${brokerHelp(OPERATOR_USER)}
  --reason REASON   only letters dead-lettered for REASON:
                    ${DEAD_LETTER_REASONS.join(", ")}
  --limit N         at most N letters per queue (default: 100 to list, all to replay)
  --replay          send the letters back to their queues
  --json            print one JSON document on stdout instead of text
  -h, --help        show this help

Exit codes:
  0  done
  1  --replay left letters that do not prove their origin
  ${EXIT_HELP_USAGE}
  ${EXIT_HELP_UNAVAILABLE}
  ${EXIT_HELP_BUG}

Examples:
  deno task dlq
  deno task dlq --function task_b --limit 5
  deno task dlq --queue queue_b --reason exhausted --replay`;

const DLQ_OPTIONS = {
  function: { type: "string" },
  queue: { type: "string" },
  ...CONFIG_OPTION,
  ...BROKER_OPTIONS,
  reason: { type: "string" },
  limit: { type: "string" },
  replay: { type: "boolean", default: false },
  ...JSON_HELP_OPTIONS,
} as const;

function parseFlags(values: OptionValues<typeof DLQ_OPTIONS>) {
  if (values.function !== undefined && values.queue !== undefined) {
    throw new UsageError("Cannot use --function with --queue: choose one");
  }
  if (values.reason !== undefined && !DEAD_LETTER_REASONS.some((r) => r === values.reason)) {
    throw new UsageError(
      `Cannot use --reason '${values.reason}': use one of ${DEAD_LETTER_REASONS.join(", ")}`,
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
    limit: wholeNumberFlag(values.limit, "--limit", values.replay ? Number.MAX_SAFE_INTEGER : 100),
  };
}

type DlqFlags = ReturnType<typeof parseFlags>;

/** A queue to read, and the broker user its function's workers run as, when known. */
interface Target {
  queue: string;
  workerUser?: string;
}

async function queuesToRead(flags: DlqFlags): Promise<Target[]> {
  // --queue works without a configuration file; with one, it says who the workers are.
  const config = await loadConfig(flags.config).catch((error) => {
    const missing = error instanceof ConfigError && error.cause instanceof Deno.errors.NotFound;
    if (flags.queue !== undefined && missing) return undefined;
    throw error;
  });
  const routes = [...(config?.functions ?? new Map()).values()];
  if (flags.queue !== undefined) {
    return [{ queue: flags.queue, workerUser: routes.find((r) => r.queue === flags.queue)?.user }];
  }
  if (flags.function === undefined) {
    return routes.map(({ queue, user }) => ({ queue, workerUser: user }));
  }
  const route = config!.functions.get(flags.function);
  if (route === undefined) {
    throw new UsageError(
      `Cannot read the dead letters of '${flags.function}' as ${
        config!.file
      } has no such function: use one of ${[...config!.functions.keys()].join(", ")}`,
    );
  }
  return [{ queue: route.queue, workerUser: route.user }];
}

// Every field of a letter is whatever its publisher wrote: shown escaped.
const show = escapeControls;

function formatLetter(letter: DeadLetter, index: number): string[] {
  const details = [
    letter.attempts !== null ? `attempts: ${letter.attempts}` : undefined,
    letter.deliveries !== null ? `deliveries: ${letter.deliveries}` : undefined,
    letter.worker ? `worker: ${show(letter.worker)}` : undefined,
    letter.at ? `at: ${show(letter.at)}` : undefined,
  ].filter(Boolean).join(", ");
  const body = letter.body.length > 200 ? `${letter.body.slice(0, 200)}...` : letter.body;
  return [
    `  #${index + 1} ${show(letter.reason)} ${show(letter.errorType)}: ${
      show(letter.errorMessage)
    } (${details})`,
    `     task ${show(letter.taskId ?? "(no id)")}, body: ${show(body)}`,
  ];
}

function formatRefused(refused: RefusedLetter[]): string[] {
  return refused.map(({ letter, why }) =>
    `  refused task ${show(letter.taskId ?? "(no id)")} (${show(letter.reason)}): ${show(why)}`
  );
}

const DLQ: Command<typeof DLQ_OPTIONS, DlqFlags, { flags: DlqFlags; targets: Target[] }> = {
  name: "dlq",
  help: HELP,
  options: DLQ_OPTIONS,
  parse: parseFlags,
  async prepare(flags) {
    return { flags, targets: await queuesToRead(flags) };
  },
  // Dead letters are read by the least privileged user that may: in the
  // compose stack, operator reads *.dlq and publishes, nothing more.
  broker: ({ flags }) => ({
    settings: brokerSettings(flags),
    user: OPERATOR_USER,
    connectionName: "dlq",
  }),
  async run({ flags, targets }, opened, { io }) {
    const { broker } = opened;
    const paint = createPainter(io.color.out);
    const report: Record<string, unknown>[] = [];
    let refusedAny = false;
    if (!flags.json) io.out(`Broker: ${opened.label}`);
    for (const { queue, workerUser } of targets) {
      const dlq = deadLetterQueueOf(queue);
      const info = await broker.inspectQueue(dlq);
      if (!info) {
        report.push({ queue: dlq, total: 0, letters: [] });
        if (!flags.json) io.out(`${dlq}: does not exist (no worker for ${queue} has started)`);
        continue;
      }
      if (flags.replay) {
        const policy = letterPolicy(workerUser, broker.user);
        const result = await replayDeadLetters(broker, dlq, { ...flags, policy });
        refusedAny ||= result.refused.length > 0;
        report.push({ queue: dlq, total: info.messages, ...result });
        if (!flags.json) {
          io.out(
            `${dlq}: replayed ${result.replayed.length} of ${info.messages} to ${queue}` +
              (result.skipped ? ` (${result.skipped} left: other reasons)` : ""),
          );
          if (result.refused.length > 0) {
            io.out(paint.warn(
              `${dlq}: ${result.refused.length} left as they do not prove their origin:`,
            ));
            for (const line of formatRefused(result.refused)) io.out(line);
          }
        }
      } else {
        const letters = await listDeadLetters(broker, dlq, flags);
        report.push({ queue: dlq, total: info.messages, letters });
        if (!flags.json) {
          const shown = letters.length < info.messages ? ` (showing ${letters.length})` : "";
          io.out(`${dlq}: ${info.messages} dead letter${info.messages === 1 ? "" : "s"}${shown}`);
          letters.forEach((letter, i) => formatLetter(letter, i).forEach((line) => io.out(line)));
        }
      }
    }
    if (flags.json) {
      io.out(escapeJsonControls(JSON.stringify({ broker: opened.label, queues: report }, null, 2)));
    }
    return refusedAny ? EXIT.failed : EXIT.passed;
  },
};

/** Runs the dead-letter tool with `args`; resolves with its exit code. */
export function main(args: string[], io: CliIo): Promise<number> {
  return runCommand(DLQ, args, io);
}

if (import.meta.main) await runMain(DLQ);
