/**
 * `deno task status`: whether the broker answers, each function's queue
 * (messages waiting, consumers, dead letters) and the live workers, found by
 * a ping every worker answers. Exit codes: 0 every function has a live
 * worker, 1 some function has none, 2 bad option or configuration, 3 broker
 * unreachable.
 *
 * @module
 */

import { type Broker, BrokerUnavailableError } from "../functions/_runtime/broker/broker.ts";
import { maskUrl } from "../functions/_runtime/broker/amqp_url.ts";
import type { AmqpTls } from "../functions/_runtime/broker/amqp_target.ts";
import { SecretFileError } from "../functions/_runtime/broker/secret_file.ts";
import { BROKER_OPTIONS, brokerFlags, brokerHelp } from "./broker_options.ts";
import { readOptions, UsageError } from "./cli.ts";
import { DISPATCHER_SETTING_NAMES, resolveBroker } from "./resolve_broker.ts";
import { gatherStatus, type SystemStatus } from "./gather_status.ts";
import { ConfigError, loadConfig } from "./load_config.ts";
import { createPainter, type Painter, shouldColor } from "./report.ts";

/** Exit codes of `deno task status`. */
export const STATUS_EXIT = { ok: 0, missingWorkers: 1, usage: 2, unreachable: 3 } as const;

const HELP = `Usage: deno task status [options]

Shows whether the broker answers, each function's queue from the
configuration (messages waiting, consumers, dead letters in <queue>.dlq),
and the live workers: every worker answers a ping on the tasks.control
exchange with its id, function, queue, uptime, tasks done and in flight.

Options:
  --config PATH   configuration file with the functions (default: test-config.yml)
${brokerHelp("dispatcher")}
  --ping-ms MS    how long workers have to answer the ping (default: 1000)
  --json          print one JSON document instead of tables
  -h, --help      show this help

Exit codes: 0 every function has a live worker, 1 some function has none,
2 bad option or configuration, 3 broker unreachable (within 5 s).

Examples:
  deno task status
  deno task status --broker amqp://dispatcher@localhost:5673 --json`;

/** Where `deno task status` writes, what it reads, and how it connects. */
export interface StatusIo {
  out: (line: string) => void;
  err: (line: string) => void;
  env: (name: string) => string | undefined;
  color: boolean;
  /** Opens the broker; fails with a `BrokerUnavailableError` within `timeoutMs`. */
  connect: (url: string, timeoutMs: number, tls?: AmqpTls) => Promise<Broker>;
}

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
export function formatStatus(
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
      String(q.workers),
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
  const idle = status.queues.filter((q) => q.workers === 0);
  for (const q of idle) {
    lines.push(
      paint.warn(
        `No live worker for ${q.function} on '${q.queue}': start one with 'docker compose up -d' or 'deno task worker ${q.function}'`,
      ),
    );
  }
  return lines;
}

function unavailableWorkers(status: SystemStatus): boolean {
  return status.queues.some((q) => q.workers === 0);
}

/** Runs `deno task status` with `args`; resolves with its exit code. */
export async function statusMain(args: string[], io: StatusIo): Promise<number> {
  const paint = createPainter(io.color);
  let values;
  try {
    values = readOptions(args, {
      config: { type: "string", default: "test-config.yml" },
      ...BROKER_OPTIONS,
      "ping-ms": { type: "string", default: "1000" },
      json: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    }, "status");
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    io.err(paint.bad(error.message));
    return STATUS_EXIT.usage;
  }
  if (values.help) {
    io.out(HELP);
    return STATUS_EXIT.ok;
  }
  const pingMs = Number(values["ping-ms"]);
  if (!Number.isInteger(pingMs) || pingMs < 1 || pingMs > 60_000) {
    io.err(
      paint.bad(`Cannot use --ping-ms '${values["ping-ms"]}': give a whole number from 1 to 60000`),
    );
    return STATUS_EXIT.usage;
  }
  let functions;
  try {
    const config = await loadConfig(values.config);
    functions = [...config.functions].map(([name, queue]) => ({ function: name, queue }));
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    io.err(paint.bad(error.message));
    return STATUS_EXIT.usage;
  }
  let target;
  try {
    target = await resolveBroker(brokerFlags(values), {
      env: io.env,
      root: new URL("../", import.meta.url),
    });
  } catch (error) {
    if (!(error instanceof TypeError || error instanceof SecretFileError)) throw error;
    io.err(paint.bad(error.message));
    return STATUS_EXIT.usage;
  }
  const masked = maskUrl(target.url);
  let broker: Broker;
  try {
    // Leaves time to start and to print within the 5 s users are promised.
    broker = await io.connect(target.url, 3500, target.tls);
  } catch (error) {
    if (!(error instanceof BrokerUnavailableError)) throw error;
    if (values.json) {
      io.out(JSON.stringify(
        { broker: { url: masked, reachable: false, error: error.message } },
        null,
        2,
      ));
    } else {
      io.out(`Broker: ${masked} ${paint.bad("(unreachable)")}`);
      io.err(paint.bad(error.message));
    }
    return STATUS_EXIT.unreachable;
  }
  let status: SystemStatus;
  try {
    status = await gatherStatus(broker, functions, { pingTimeoutMs: pingMs });
  } catch (error) {
    if (!(error instanceof BrokerUnavailableError)) throw error;
    io.err(paint.bad(error.message));
    return STATUS_EXIT.unreachable;
  } finally {
    await broker.close();
  }
  if (values.json) {
    io.out(JSON.stringify(
      { broker: { url: masked, reachable: true }, config: values.config, ...status },
      null,
      2,
    ));
  } else {
    for (const line of formatStatus(status, masked, values.config, paint)) io.out(line);
  }
  return unavailableWorkers(status) ? STATUS_EXIT.missingWorkers : STATUS_EXIT.ok;
}

if (import.meta.main) {
  const { connectAmqp } = await import("../functions/_runtime/broker/connect_amqp.ts");
  const code = await statusMain(Deno.args, {
    out: (line) => console.log(line),
    err: (line) => console.error(line),
    env: (name) => Deno.env.get(name),
    color: shouldColor(Deno.stdout.isTerminal(), Deno.env.get("NO_COLOR")),
    connect: (url, timeoutMs, tls) =>
      connectAmqp(url, {
        timeoutMs,
        heartbeatSeconds: 2,
        connectionName: "status",
        tls,
        settingNames: DISPATCHER_SETTING_NAMES,
      }),
  });
  Deno.exit(code);
}
