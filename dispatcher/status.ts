/**
 * `deno task status`: whether the broker answers, each function's queue
 * (messages waiting, consumers, dead letters) and the live workers, found by
 * a ping every worker answers. Exit codes: 0 every function has a live
 * worker, 1 some function has none, 2 bad option or configuration, 3 broker
 * unreachable, 70 a bug.
 *
 * @module
 */

import { unexpectedSenders } from "../client/protocol.ts";
import {
  BROKER_OPTIONS,
  brokerHelp,
  brokerSettings,
  type CliIo,
  type Command,
  CONFIG_OPTION,
  createPainter,
  EXIT,
  EXIT_HELP_BUG,
  EXIT_HELP_USAGE,
  JSON_HELP_OPTIONS,
  type OptionValues,
  type Painter,
  runCommand,
  runMain,
  wholeNumberFlag,
} from "./cli/mod.ts";
import { type Config, loadConfig } from "./config/load_config.ts";
import { gatherStatus, type SystemStatus } from "./gather_status.ts";

/** Exit codes of `deno task status`. */
export const STATUS_EXIT = {
  ok: EXIT.passed,
  missingWorkers: EXIT.failed,
  usage: EXIT.usage,
  unreachable: EXIT.unavailable,
  bug: EXIT.bug,
} as const;

const HELP = `Usage: deno task status [options]

Shows whether the broker answers, each function's queue from the
configuration (messages waiting, consumers, dead letters in <queue>.dlq),
and the live workers: every worker answers a ping on the tasks.control
exchange with its id, function, queue, uptime, tasks done and in flight.
An answer counts only from the broker user of the function it names (its
'user' in the configuration, default its name) or this tool's own user.
Celery workers answer no ping: for a function served by them (protocol:
celery) WORKERS counts the consumers of its queue.

Options:
  --config PATH   configuration file with the functions (default: test-config.yml)
${brokerHelp("dispatcher")}
  --ping-ms MS    how long workers have to answer the ping (default: 1000)
  --json          print one JSON document instead of tables
  -h, --help      show this help

Exit codes:
  0  every function has a live worker
  1  some function has none
  ${EXIT_HELP_USAGE}
  3  broker unreachable (within 5 s)
  ${EXIT_HELP_BUG}

Examples:
  deno task status
  deno task status --broker amqp://dispatcher@localhost:5673 --json`;

const STATUS_OPTIONS = {
  ...CONFIG_OPTION,
  ...BROKER_OPTIONS,
  "ping-ms": { type: "string", default: "1000" },
  ...JSON_HELP_OPTIONS,
} as const;

/** Rows as left-aligned columns, two spaces apart. */
export function formatTable(rows: string[][]): string[] {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
  return rows.map((row) => row.map((cell, i) => cell.padEnd(widths[i])).join("  ").trimEnd());
}

function uptime(ms: number): string {
  const total = Math.floor(ms / 1000);
  const [d, h, m, s] = [
    Math.floor(total / 86400),
    Math.floor(total / 3600) % 24,
    Math.floor(total / 60) % 60,
    total % 60,
  ];
  return d > 0 ? `${d}d ${h}h` : h > 0 ? `${h}h ${m}m` : m > 0 ? `${m}m ${s}s` : `${s}s`;
}

function count(value: number | null): string {
  return value === null ? "-" : String(value);
}

/** The status as lines for people. */
function formatStatus(
  status: SystemStatus,
  broker: string,
  configFile: string,
  paint: Painter,
): string[] {
  const lines = [`Broker: ${broker} ${paint.ok("(reachable)")}`, "", `Queues (${configFile}):`];
  const queueRows = [["FUNCTION", "QUEUE", "MESSAGES", "CONSUMERS", "DEAD LETTERS", "WORKERS"]];
  for (const q of status.queues) {
    queueRows.push([
      q.function,
      q.queue,
      q.exists ? count(q.messages) : "missing",
      count(q.consumers),
      count(q.dead_letters),
      q.protocol === "celery" ? `${q.workers} (celery)` : String(q.workers),
    ]);
  }
  lines.push(...formatTable(queueRows).map((row, i) => `  ${i === 0 ? paint.dim(row) : row}`));
  lines.push("", `Workers: ${status.workers.length}`);
  if (status.workers.length > 0) {
    const rows = [["ID", "FUNCTION", "QUEUE", "UPTIME", "DONE", "IN FLIGHT"]];
    for (const w of status.workers) {
      rows.push([
        w.worker,
        w.function,
        w.queue,
        uptime(w.uptime_ms),
        String(w.tasks_done),
        String(w.in_flight),
      ]);
    }
    lines.push(...formatTable(rows).map((row, i) => `  ${i === 0 ? paint.dim(row) : row}`));
  }
  for (const q of status.queues.filter((q) => q.workers === 0)) {
    lines.push(
      paint.warn(
        q.protocol === "celery"
          ? `No Celery worker consumes '${q.queue}' for ${q.function}: start one with 'docker compose --profile celery up -d' or 'celery -A <app> worker -Q ${q.queue}'`
          : `No live worker for ${q.function} on '${q.queue}': start one with 'docker compose up -d' or 'deno task worker ${q.function}'`,
      ),
    );
  }
  return lines;
}

function parseFlags(values: OptionValues<typeof STATUS_OPTIONS>) {
  return {
    config: values.config,
    json: values.json,
    settings: brokerSettings(values),
    pingMs: wholeNumberFlag(values["ping-ms"], "--ping-ms", 1000, 1, 60_000),
  };
}

type StatusFlags = ReturnType<typeof parseFlags>;

const STATUS: Command<typeof STATUS_OPTIONS, StatusFlags, { flags: StatusFlags; config: Config }> =
  {
    name: "status",
    help: HELP,
    options: STATUS_OPTIONS,
    parse: parseFlags,
    async prepare(flags) {
      return { flags, config: await loadConfig(flags.config) };
    },
    // Leaves time to start and to print within the 5 s users are promised.
    broker: ({ flags }) => ({
      settings: flags.settings,
      timeoutMs: 3500,
      connectionName: "status",
    }),
    unavailable({ flags }, label, error, { io }) {
      const paint = createPainter(io.color.out);
      if (flags.json) {
        const broker = { url: label ?? null, reachable: false, error: error.message };
        io.out(JSON.stringify({ broker }, null, 2));
      } else io.out(`Broker: ${label} ${paint.bad("(unreachable)")}`);
    },
    async run({ flags, config }, opened, { io, complain }) {
      const status = await gatherStatus(opened.broker, config.functions, {
        pingTimeoutMs: flags.pingMs,
      });
      if (status.unexpected_senders > 0) {
        complain(unexpectedSenders(status.unexpected_senders, "pong", opened.broker.user), "warn");
      }
      if (flags.json) {
        io.out(JSON.stringify(
          { broker: { url: opened.label, reachable: true }, config: flags.config, ...status },
          null,
          2,
        ));
      } else {
        const paint = createPainter(io.color.out);
        for (const line of formatStatus(status, opened.label, flags.config, paint)) io.out(line);
      }
      return status.queues.some((q) => q.workers === 0)
        ? STATUS_EXIT.missingWorkers
        : STATUS_EXIT.ok;
    },
  };

/** Runs `deno task status` with `args`; resolves with its exit code. */
export function statusMain(args: string[], io: CliIo): Promise<number> {
  return runCommand(STATUS, args, io);
}

if (import.meta.main) await runMain(STATUS);
