/**
 * The entry point of a worker process, on the host (`deno task worker
 * task_a`) and in the worker image. In this order, it:
 *
 * 1. reads its settings from the environment and its secrets from files;
 * 2. connects to the broker (retrying with backoff until it answers);
 * 3. gives up reading its secret files, every variable, the host name and
 *    any right to run programs or write files (`drop_permissions.ts`), and
 *    logs what it gave up, as Deno reports it;
 * 4. only then loads the function, into a sandbox with no permissions at all
 *    (`sandbox/sandbox.ts`), so none of the function's code ever runs with
 *    more;
 * 5. consumes the function's queue ({@linkcode runWorker}: reconnecting
 *    with backoff after a lost connection) until SIGTERM or SIGINT, then
 *    drains and exits 0.
 *
 * It refuses to start (exit 2) when it may read every file: Deno checks an
 * import written out in the function's code against what this process may
 * read, so the function would read what the worker may.
 *
 * Exit codes: 0 after a stop signal, 1 after a fault no reconnection can
 * fix (such as a queue that exists with other settings), 2 for bad settings,
 * an unreadable secret file, a blanket --allow-read, or a function that
 * cannot be loaded.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { backoffDelay, RECONNECT_POLICY } from "../../core/backoff.ts";
import {
  type Broker,
  type BrokerTarget,
  BrokerUnavailableError,
  connect as connectBroker,
  QueueMismatchError,
  resolveBrokerTarget,
} from "../../core/broker/mod.ts";
import { createBufferedWriter, createLogger, type Logger, SILENT_LOGGER } from "../../core/log.ts";
import { WORKER_ENV_VARS, WORKER_IMAGE_FILES, type WorkerEnvVar } from "../defaults.ts";
import type { HandlerRunner } from "../handler_runner.ts";
import { SandboxError, type SandboxIsolation, startSandbox } from "../sandbox/sandbox.ts";
import { AnsweredTasks } from "../worker/answered_tasks.ts";
import { CancelledCalls } from "../worker/cancellations.ts";
import { type RunningWorker, startWorker, type WorkerOptions } from "../worker/consumer.ts";
import { WorkerMetrics } from "../worker/observe.ts";
import { dropPermissions, reportPermissions } from "./drop_permissions.ts";
import { startHealthServer } from "./health.ts";
import { type FunctionEvents, registryEvents } from "./event_settings.ts";
import {
  checkDeployment,
  DeploymentError,
  functionModule,
  moduleMissing,
  readWorkerSettings,
  type WorkerSettings,
} from "./settings.ts";

const HELP = `Usage: deno task worker <function>

Runs functions/<function>.ts as a worker: it consumes the function's queue on
RabbitMQ, answers each request on its reply_to, and stops cleanly on SIGTERM
or SIGINT (Ctrl-C), finishing the tasks it holds. The function runs in a
sandbox with no permissions; the runtime gives up its own start-up
permissions (secret files, variables, host name) before loading it.

Examples:
  deno task worker task_a
  AMQP_URL=amqp://guest:guest@localhost:5672 CONCURRENCY=4 deno task worker task_b

The worker may read only functions/; to use a *_FILE variable, allow its file:
  AMQP_URL=amqp://task_a@broker:5672 AMQP_PASSWORD_FILE=task_a.password \\
    deno run --no-prompt --unstable-worker-options --allow-net --allow-env \\
    --allow-sys=hostname --allow-read=functions,runtime,core,task_a.password \\
    runtime/process/main.ts task_a

Environment:
  AMQP_URL           broker URL (default amqp://guest:guest@localhost:5672),
                     amqps:// for TLS; several nodes of a cluster separated
                     by commas; leave the password out and use:
  AMQP_PASSWORD_FILE file holding the password of the URL's user
  AMQP_URL_FILE      file holding the whole URL (instead of AMQP_URL)
  AMQP_CA_FILE       PEM file of the CA that signs the broker's certificate
  AMQP_CERT_FILE     PEM file of a client certificate, with AMQP_KEY_FILE
  AMQP_KEY_FILE      PEM file of that certificate's private key
  QUEUE              queue to consume (default: the function's own)
  CONCURRENCY        handlers running at once (default 64; one at a time while
                     a handler holds the sandbox with CPU-bound work)
  PREFETCH           unacknowledged deliveries held (default CONCURRENCY)
  QUEUE_TYPE         quorum or classic (default quorum)
  DELIVERY_LIMIT     deliveries of a request that never settled before it is
                     dead-lettered (default 5; quorum queues only)
  ALLOWED_SENDERS    broker users whose requests run, separated by commas, or
                     * for anyone (default: the function's allowedSenders)
  MAX_MESSAGE_BYTES  largest request and result accepted (default 1048576)
  SHUTDOWN_GRACE_MS  time to finish tasks after a stop signal (default 10000)
  WORKER_ID          name in replies and logs (default <function>@<host>-<pid>)
  LOG_LEVEL          debug, info, warn or error (default info)
  LOG_FORMAT         json or text (default json)
  METRICS_PORT       port of GET /healthz and /metrics (default 9464; 0: off)
  TASK_EVENTS        true: publish task events to the tasks.events exchange,
                     for deno task dashboard (default false)
  MAX_ETA_MS         longest wait a Celery eta may ask for; a later one is
                     refused (default 604800000, 7 days)
  FUNCTION_NAME      the function its deployment runs (the deployments made
  FUNCTION_QUEUE     from functions/registry.yaml set both): exit 2 at start
                     when the module defines another name or queue
  FUNCTION_TRIGGERS  topic patterns of the events that run it, separated by
                     commas; FUNCTION_EMITS: the event type its results are
                     emitted as. Unset (and no FUNCTION_NAME), both come from
                     functions/registry.yaml (docs/events.md)
  OTEL_DENO          true: export OpenTelemetry traces of every task, with
                     the standard OTEL_* variables (read by Deno itself)
`;

function hostName(): string {
  try {
    return Deno.hostname();
  } catch {
    return "localhost";
  }
}

function imageHint(setting: string): string | undefined {
  const path = WORKER_IMAGE_FILES[setting as keyof typeof WORKER_IMAGE_FILES];
  return path && `the worker image reads ${setting} only from ${path}: mount the file there`;
}

/** Options for {@linkcode runWorker}. */
export interface RunWorkerOptions extends WorkerOptions {
  /** Opens a broker connection; called again after each loss. */
  connect: () => Promise<Broker>;
  /** A connection already open, used first. */
  initial?: Broker;
  /** Aborting it stops the worker gracefully. */
  signal: AbortSignal;
  /**
   * How long running handlers may take to finish after a stop.
   * @default {10_000}
   */
  graceMs?: number;
  /** Told each time the worker starts or stops consuming. */
  onConsuming?: (consuming: boolean, worker: RunningWorker | undefined) => void;
}

/** Waits `ms`, or less if `signal` aborts first; never rejects. */
export function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

/**
 * After a failed connection: rethrows what is not an unreachable broker,
 * else logs it and waits the backoff of the `failures`th attempt (less when
 * `signal` aborts).
 */
export async function waitToReconnect(
  error: unknown,
  failures: number,
  log: Logger,
  signal: AbortSignal,
): Promise<void> {
  if (!(error instanceof BrokerUnavailableError)) throw error;
  const delay = backoffDelay(failures, RECONNECT_POLICY);
  log.warn("Broker not reachable; retrying", {
    attempt: failures,
    retry_in_ms: delay,
    error: error.message,
  });
  await pause(delay, signal);
}

/**
 * Runs a function as a worker until `signal` is aborted: connects (retrying
 * with backoff, one log line per attempt), consumes, reconnects after a lost
 * connection, and on abort drains within the grace period and closes.
 * Rejects only for a fault no reconnection can fix, such as a queue that
 * exists with other settings.
 */
export async function runWorker(
  runner: HandlerRunner,
  options: RunWorkerOptions,
): Promise<void> {
  const { signal } = options;
  const queue = options.queue ?? runner.info.queue;
  const log = (options.log ?? SILENT_LOGGER).child({
    function: runner.info.name,
    queue,
    worker: options.workerId,
  });
  let initial = options.initial;
  const connect = () => {
    const first = initial;
    initial = undefined;
    return first ? Promise.resolve(first) : options.connect();
  };
  // One set of counters for the life of the process, whatever the reconnections.
  const metrics = options.metrics ?? new WorkerMetrics();
  // And one record of answered tasks: a request the broker delivers again
  // after a reconnection is answered from it, not run twice.
  const answered = options.answered ?? new AnsweredTasks();
  // And one record of cancellations, which a new connection reads again.
  const cancelled = options.cancelled ?? new CancelledCalls();
  let failures = 0;
  while (!signal.aborted) {
    let broker: Broker;
    try {
      broker = await connect();
    } catch (error) {
      await waitToReconnect(error, ++failures, log, signal);
      continue;
    }
    let worker: RunningWorker;
    try {
      worker = await startWorker(runner, broker, { ...options, metrics, answered, cancelled });
    } catch (error) {
      await broker.close();
      if (error instanceof QueueMismatchError) throw explainMismatch(error, options);
      if (!(error instanceof BrokerUnavailableError)) throw error;
      failures++;
      log.warn("Could not start consuming; retrying", { attempt: failures, error: error.message });
      await pause(backoffDelay(failures, RECONNECT_POLICY), signal);
      continue;
    }
    failures = 0;
    log.info("Consuming", {
      prefetch: options.prefetch ?? options.concurrency ?? 1,
      concurrency: options.concurrency ?? 1,
    });
    options.onConsuming?.(true, worker);
    const stopped = new Promise<"stop">((resolve) => {
      if (signal.aborted) resolve("stop");
      signal.addEventListener("abort", () => resolve("stop"), { once: true });
    });
    const outcome = await Promise.race([broker.closed, stopped]);
    options.onConsuming?.(false, worker);
    if (outcome === "stop") {
      log.info("Stopping: finishing tasks in flight", { in_flight: worker.stats.inFlight });
      await worker.stop(options.graceMs ?? 10_000);
      await broker.close();
      log.info("Stopped", { ...worker.stats });
      return;
    }
    worker.abandon();
    failures = 1;
    log.warn("Lost the broker connection; reconnecting", {
      error: outcome?.message ?? "closed",
    });
    await pause(backoffDelay(failures, RECONNECT_POLICY), signal);
  }
  log.info("Stopped while not connected");
}

/** A queue that exists with other settings, said in the worker's own terms. */
function explainMismatch(error: QueueMismatchError, options: WorkerOptions): Error {
  const type = (value: string) => value === "none" ? "classic" : value.replaceAll("'", "");
  if (error.argument === "x-queue-type") {
    const wanted = options.queueType ?? "quorum";
    return new QueueMismatchError(
      `Cannot consume queue '${error.queue}' as it exists as a ${
        type(error.current)
      } queue and this worker uses ${wanted} queues (QUEUE_TYPE=${wanted}): set QUEUE_TYPE=${
        type(error.current)
      } to keep using it, or migrate it to ${wanted} (docs/operations.md, "Changing a queue's type or limits")`,
      error,
      { cause: error },
    );
  }
  return new QueueMismatchError(
    `Cannot consume queue '${error.queue}' as it was declared with other arguments (${error.argument}: ${error.current}, where this worker declares ${error.wanted}), by another DELIVERY_LIMIT or a version without dead-letter targets on its queues: migrate it (docs/operations.md, "Changing a queue's type or limits")`,
    error,
    { cause: error },
  );
}

/** Connects, retrying with backoff while nothing answers; `undefined` if stopped first. */
async function connectFirst(
  connect: () => Promise<Broker>,
  signal: AbortSignal,
  log: Logger,
): Promise<Broker | undefined> {
  for (let failures = 1; !signal.aborted; failures++) {
    try {
      return await connect();
    } catch (error) {
      await waitToReconnect(error, failures, log, signal);
    }
  }
  return undefined;
}

/** A logger that writes each line through whichever logger `current()` returns then. */
function followLogger(current: () => Logger): Logger {
  return {
    debug: (msg, fields) => current().debug(msg, fields),
    info: (msg, fields) => current().info(msg, fields),
    warn: (msg, fields) => current().warn(msg, fields),
    error: (msg, fields) => current().error(msg, fields),
    child: (fields) => followLogger(() => current().child(fields)),
  };
}

/** Options of {@linkcode main}, for programs that start a worker their own way. */
export interface MainOptions {
  /**
   * Where the function's sandbox runs: `process` starts it in a process of
   * its own (`process_host.ts`), which keeps the right to run Deno while it
   * serves (to start it again). The benchmark measures both.
   * @default {"thread"}
   */
  isolation?: SandboxIsolation;
}

/** Runs the worker process; resolves with its exit code. */
export async function main(args: string[], options: MainOptions = {}): Promise<number> {
  const { positionals, values } = parseArgs({
    args,
    allowPositionals: true,
    options: { help: { type: "boolean", short: "h" } },
    strict: false,
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  if (Deno.permissions.querySync({ name: "read" }).state === "granted") {
    console.error(
      "Cannot start a worker that may read every file (--allow-read without paths), as its function could read any of them through an import written out in its code: grant --allow-read=functions,runtime,core and each secret file by path, as 'deno task worker' does",
    );
    return 2;
  }
  const functionsDir = new URL("../../functions/", import.meta.url);
  let module: URL;
  let settings: WorkerSettings;
  let target: BrokerTarget;
  let registered: Map<string, FunctionEvents> | undefined;
  try {
    if (positionals.length !== 1) {
      throw new TypeError(
        positionals.length === 0
          ? "Cannot start a worker without a function name: run 'deno task worker task_a'"
          : `Cannot run '${positionals.join(" ")}': give one function name, such as task_a`,
      );
    }
    module = functionModule(positionals[0], functionsDir);
    const missing = await moduleMissing(module, functionsDir);
    if (missing) throw new TypeError(missing);
    settings = readWorkerSettings((name: WorkerEnvVar) => Deno.env.get(name));
    // A deployment says; a host worker reads the registry beside its functions.
    if (settings.subscriptions === undefined && settings.deployment.name === undefined) {
      registered = await registryEvents(new URL("registry.yaml", functionsDir));
    }
    target = await resolveBrokerTarget({
      env: (name) => Deno.env.get(name),
      notCapableHint: imageHint,
    });
  } catch (error) {
    console.error((error as Error).message);
    console.error(
      `See 'deno task worker --help'. Settings come from ${WORKER_ENV_VARS.join(", ")}.`,
    );
    return 2;
  }

  const provisionalName = positionals[0].replace(/^.*\//, "").replace(/\.[a-z]+$/, "");
  // Read now: the permission goes before the function is known.
  const host = hostName();
  const workerId = settings.workerId ?? `${provisionalName}@${host}-${Deno.pid}`;
  const output = createBufferedWriter(Deno.stdout);
  // Deno.exit() and a normal end both dispatch "unload": no line is left behind.
  globalThis.addEventListener("unload", () => output.flush());
  let log = createLogger({
    level: settings.logLevel,
    format: settings.logFormat,
    write: output.write,
    // Until the function is loaded, its lines name it by its file.
    fields: { function: provisionalName, queue: settings.queue, worker: workerId },
  });
  // What outlives the loading of the function (the health server, the
  // sandbox) writes through the logger of the moment, so as to name it too.
  const following = followLogger(() => log);
  const controller = new AbortController();
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    Deno.addSignalListener(signal, () => controller.abort(signal));
  }
  const metrics = new WorkerMetrics();
  let consuming = false;
  let labels = { function: provisionalName, queue: settings.queue ?? "" };
  const health = startHealthServer({
    port: settings.metricsPort,
    metrics,
    labels: () => labels,
    consuming: () => consuming,
    log: following,
  });
  const connect = () => connectBroker(target, { connectionName: workerId });
  log.info("Starting", {
    broker: target.label,
    tls: target.tls ? Object.keys(target.tls).join(",") : undefined,
  });
  let exitCode = 0;
  let sandbox;
  try {
    const broker = await connectFirst(connect, controller.signal, log);
    if (!broker) {
      log.info("Stopped while not connected");
      return 0;
    }
    const secretFiles = [...new Set([...Object.values(WORKER_IMAGE_FILES), ...target.files])];
    const keepRun = options.isolation === "process";
    dropPermissions({ files: secretFiles, keepRun });
    // Asked of Deno, not assumed: the line shows what this process holds now.
    const { givenUp, kept } = reportPermissions(secretFiles, { keepRun });
    log.info("Gave up the start-up permissions before loading the function", {
      given_up: givenUp.join(", "),
      still_held: kept.length > 0 ? kept.join(", ") : undefined,
    });
    if (kept.length > 0) {
      log.warn(
        "This process cannot give up some of its start-up permissions, as they were granted as part of a wider grant (a folder of --allow-read): grant each secret file by path",
        { still_held: kept.join(", ") },
      );
    }
    try {
      sandbox = await startSandbox({
        module,
        name: provisionalName,
        log: following,
        isolation: options.isolation,
      });
      checkDeployment(sandbox.info, settings.deployment);
    } catch (error) {
      await broker.close();
      throw error;
    }
    const queue = settings.queue ?? sandbox.info.queue;
    labels = { function: sandbox.info.name, queue };
    const namedId = settings.workerId ?? `${sandbox.info.name}@${host}-${Deno.pid}`;
    // The lines so far name the module's file, which in the worker image is
    // function.ts for every function: from here on they name the function.
    log = log.child({ function: sandbox.info.name, queue, worker: namedId });
    const subscriptions = settings.subscriptions ?? registered?.get(sandbox.info.name);
    if (subscriptions && (subscriptions.triggers.length > 0 || subscriptions.emits)) {
      log.info("Events", {
        triggers: subscriptions.triggers.join(",") || undefined,
        emits: subscriptions.emits,
      });
    }
    await runWorker(sandbox, {
      initial: broker,
      connect,
      metrics,
      onConsuming: (now) => consuming = now,
      signal: controller.signal,
      workerId: namedId,
      queue: settings.queue,
      concurrency: settings.concurrency,
      prefetch: settings.prefetch,
      queueType: settings.queueType,
      deliveryLimit: settings.deliveryLimit,
      allowedSenders: settings.allowedSenders,
      maxMessageBytes: settings.maxMessageBytes,
      graceMs: settings.graceMs,
      events: settings.events,
      maxEtaMs: settings.maxEtaMs,
      triggers: subscriptions?.triggers,
      emits: subscriptions?.emits,
      log,
    });
  } catch (error) {
    if (error instanceof SandboxError || error instanceof DeploymentError) {
      log.error((error as Error).message);
      exitCode = 2;
    } else {
      log.error("Worker stopped on a fault it cannot recover from", { error });
      exitCode = 1;
    }
  } finally {
    await sandbox?.close();
    await health?.shutdown();
  }
  return exitCode;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
