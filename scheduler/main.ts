/**
 * `deno task scheduler`: one replica of the scheduler, which fires the
 * ticks of the functions the registry schedules (docs/schedules.md). Run
 * any number of replicas; the broker picks the one that fires
 * (`scheduler_session.ts`), and this process reconnects and waits as a
 * standby whenever it is not that one (`run_scheduler.ts`).
 *
 * Exit codes: 0 after SIGTERM or SIGINT (or `--list`), 1 a fault no
 * reconnection fixes, 2 a bad option, registry or credentials file, 70 a
 * bug.
 *
 * @module
 */

import {
  BROKER_FLAG_NAMES,
  BROKER_OPTIONS,
  brokerHelp,
  brokerSettings,
  readOptions,
  UsageError,
  wholeNumberFlag,
} from "../dispatcher/cli/options.ts";
import {
  type BrokerTarget,
  connect,
  resolveBrokerTarget,
  SecretFileError,
} from "../core/broker/mod.ts";
import { ConfigError } from "../core/config_error.ts";
import { SCHEDULER_QUEUE, SCHEDULER_USER } from "../core/contract/mod.ts";
import { createLogger, type LogFormat } from "../core/log.ts";
import { DEFAULT_REGISTRY, loadRegistry } from "../core/registry.ts";
import { describeSchedule, TickClock } from "../core/schedule.ts";
import { SCHEDULER_HEALTH_PORT, serveHealth } from "./health.ts";
import { type ReplicaState, runScheduler } from "./run_scheduler.ts";
import type { ScheduledFunction } from "./scheduler_session.ts";

/** Exit codes of `deno task scheduler`. */
export const SCHEDULER_EXIT = { stopped: 0, fault: 1, usage: 2, bug: 70 } as const;

const HELP = `Usage: deno task scheduler [options]

Fires the ticks of the functions that the function registry schedules
(schedule: in functions/registry.yaml; docs/schedules.md). Each tick is a
request to the function's queue, with no reply, whose task id is
<function>@<tick time>: a tick fired twice is one task to the workers.

Run as many replicas as you like, anywhere: they all consume the queue
${SCHEDULER_QUEUE}, which feeds one of them only (RabbitMQ's single active
consumer). That one fires; when it stops or dies, the broker hands the
queue, and the schedule's state in it, to the next, which fires the next
tick on time. Ticks missed while no replica ran are fired late within each
schedule's catch_up window, older ones skipped.

Options:
  --registry PATH      the function registry (default: ${DEFAULT_REGISTRY})
${brokerHelp(SCHEDULER_USER)}
  --id NAME            this replica's name in its logs and in the state it
                       writes (default: scheduler@<host>-<pid>)
  --queue-type TYPE    quorum or classic: the type of the ${SCHEDULER_QUEUE}
                       queue, as it exists on the broker (default: quorum)
  --state-queue NAME   share another queue than ${SCHEDULER_QUEUE}: a group
                       of replicas of its own, with a state of its own (its
                       broker user needs rights on it)
  --health-port PORT   serve GET /healthz on this port: 200 while connected
                       ("ok: active" or "ok: standby"), else 503 (default: 0,
                       none; the image serves it on ${SCHEDULER_HEALTH_PORT})
  --log-format FORMAT  json or text (default: json)
  --list               print each schedule and its next three ticks, then
                       exit, without a broker
  -h, --help           show this help

Exit codes:
  0  stopped by SIGTERM or SIGINT (or --list printed)
  1  a fault no reconnection can fix: the ${SCHEDULER_QUEUE} queue exists
     with other settings
  2  bad option, registry or credentials file
  70 a bug: an unexpected error, printed with its stack to report

Examples:
  deno task scheduler --list
  deno task scheduler
  deno task scheduler --broker amqp://scheduler@localhost:5672 --id replica-2`;

const OPTIONS = {
  registry: { type: "string", default: DEFAULT_REGISTRY },
  ...BROKER_OPTIONS,
  id: { type: "string" },
  "queue-type": { type: "string", default: "quorum" },
  "state-queue": { type: "string", default: SCHEDULER_QUEUE },
  "health-port": { type: "string", default: "0" },
  "log-format": { type: "string", default: "json" },
  list: { type: "boolean", default: false },
  help: { type: "boolean", short: "h", default: false },
} as const;

/** Where the scheduler writes and what it reads from its environment. */
export interface SchedulerIo {
  out: (line: string) => void;
  err: (line: string) => void;
  env: (name: string) => string | undefined;
  /** Aborted by SIGTERM or SIGINT. */
  signal: AbortSignal;
  hostname: () => string;
}

function flagsOf(args: string[]) {
  const values = readOptions(args, OPTIONS, "scheduler");
  const queueType = values["queue-type"];
  if (queueType !== "quorum" && queueType !== "classic") {
    throw new UsageError(`Cannot use --queue-type '${queueType}': use quorum or classic`);
  }
  const format = values["log-format"];
  if (format !== "json" && format !== "text") {
    throw new UsageError(`Cannot use --log-format '${format}': use json or text`);
  }
  const id = values.id;
  if (id !== undefined && !/^[\w@.:-]{1,128}$/.test(id)) {
    throw new UsageError(
      `Cannot use --id '${id.slice(0, 64)}': use at most 128 letters, digits and _ @ . : -`,
    );
  }
  const stateQueue = values["state-queue"];
  if (!/^[a-z][a-z0-9_.]{0,127}$/.test(stateQueue)) {
    throw new UsageError(
      `Cannot use --state-queue '${
        stateQueue.slice(0, 64)
      }': use lower-case letters, digits, _ and ., starting with a letter`,
    );
  }
  return {
    help: values.help,
    stateQueue,
    list: values.list,
    registry: values.registry,
    settings: brokerSettings(values),
    id,
    queueType: queueType as "quorum" | "classic",
    healthPort: wholeNumberFlag(values["health-port"], "--health-port", 0, 0, 65535),
    format: format as LogFormat,
  };
}

/** The lines of `--list`: each schedule, and its next ticks from `now`. */
export function listSchedules(functions: readonly ScheduledFunction[], now: number): string[] {
  if (functions.length === 0) {
    return ["No function has a schedule: add schedule: to one in the registry (docs/schedules.md)"];
  }
  return functions.flatMap((fn) => {
    const clock = new TickClock(fn.schedule);
    const next: string[] = [];
    for (let tick = clock.next(now); tick !== null && next.length < 3; tick = clock.next(tick)) {
      next.push(new Date(tick).toISOString());
    }
    return [
      `${fn.name} on ${fn.queue}: ${describeSchedule(fn.schedule)}, catch_up ${
        fn.schedule.catchUpMs / 1000
      } s`,
      `  next: ${next.join(", ")}`,
    ];
  });
}

/** Runs the scheduler with `args`; resolves with its exit code. */
export async function main(args: string[], io: SchedulerIo): Promise<number> {
  let flags: ReturnType<typeof flagsOf>;
  let functions: ScheduledFunction[];
  let target: BrokerTarget;
  try {
    flags = flagsOf(args);
    if (flags.help) {
      io.out(HELP);
      return SCHEDULER_EXIT.stopped;
    }
    const registry = await loadRegistry(flags.registry);
    functions = [...registry.functions.values()].flatMap(({ name, queue, schedule }) =>
      schedule ? [{ name, queue, schedule }] : []
    );
    if (flags.list) {
      for (const line of listSchedules(functions, Date.now())) io.out(line);
      return SCHEDULER_EXIT.stopped;
    }
    target = await resolveBrokerTarget({
      settings: flags.settings,
      names: BROKER_FLAG_NAMES,
      env: io.env,
      stackUser: SCHEDULER_USER,
    });
  } catch (error) {
    if (
      error instanceof UsageError || error instanceof ConfigError ||
      error instanceof SecretFileError
    ) {
      io.err((error as Error).message);
      return SCHEDULER_EXIT.usage;
    }
    io.err(
      `Bug: deno task scheduler stopped on an unexpected error (exit 70):\n${
        (error as Error)?.stack ?? error
      }`,
    );
    return SCHEDULER_EXIT.bug;
  }
  const id = flags.id ?? `scheduler@${io.hostname()}-${Deno.pid}`;
  const log = createLogger({ format: flags.format, write: io.out, fields: { scheduler: id } });
  const state: ReplicaState = { connected: false, active: false };
  let health: { shutdown(): Promise<void> } | undefined;
  if (flags.healthPort !== 0) {
    try {
      health = serveHealth(flags.healthPort, state);
    } catch (error) {
      log.error(
        `Cannot serve /healthz on port ${flags.healthPort}: ${
          (error as Error).message
        }: give --health-port a free port, or 0`,
      );
    }
  }
  log.info("Starting", {
    broker: target.label,
    registry: flags.registry,
    schedules: functions.map((fn) => `${fn.name}: ${describeSchedule(fn.schedule)}`).join("; ") ||
      "none",
  });
  try {
    await runScheduler({
      connect: () => connect(target, { connectionName: id }),
      signal: io.signal,
      functions,
      id,
      log,
      queueType: flags.queueType,
      queue: flags.stateQueue,
      state,
    });
    return SCHEDULER_EXIT.stopped;
  } catch (error) {
    log.error("Scheduler stopped on a fault it cannot recover from", { error });
    return SCHEDULER_EXIT.fault;
  } finally {
    await health?.shutdown();
  }
}

if (import.meta.main) {
  const controller = new AbortController();
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    Deno.addSignalListener(signal, () => controller.abort(signal));
  }
  Deno.exit(
    await main(Deno.args, {
      out: (line) => console.log(line),
      err: (line) => console.error(line),
      env: (name) => Deno.env.get(name),
      signal: controller.signal,
      hostname: () => {
        try {
          return Deno.hostname();
        } catch {
          return "localhost";
        }
      },
    }),
  );
}
