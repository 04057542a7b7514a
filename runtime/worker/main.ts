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
 *    (`sandbox.ts`), so none of the function's code ever runs with more;
 * 5. consumes the function's queue until SIGTERM or SIGINT, then drains
 *    and exits 0.
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
import {
  type Broker,
  type BrokerTarget,
  connect as connectBroker,
  resolveBrokerTarget,
} from "../../core/broker/mod.ts";
import { NAME_PATTERN } from "../../core/contract/names.ts";
import { createBufferedWriter, createLogger, type Logger } from "../../core/log.ts";
import { dropPermissions, reportPermissions } from "./drop_permissions.ts";
import { type HealthServer, serveHealth } from "./health_server.ts";
import { WorkerMetrics } from "./metrics.ts";
import { runWorker, waitToReconnect } from "./run_worker.ts";
import { SandboxError, startSandbox } from "./sandbox.ts";
import {
  readWorkerSettings,
  WORKER_ENV_VARS,
  WORKER_IMAGE_FILES,
  type WorkerEnvVar,
  type WorkerSettings,
} from "./worker_settings.ts";

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
    runtime/worker/main.ts task_a

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
  CONCURRENCY        handlers running at once (default 1)
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

/**
 * Which module to run: a function name means functions/<name>.ts; a path is
 * taken from the project's folder (the one holding functions/) unless it is
 * absolute.
 */
export function functionModule(argument: string, functionsDir: URL): URL {
  if (NAME_PATTERN.test(argument)) return new URL(`${argument}.ts`, functionsDir);
  if (/\.(ts|js|mts|mjs)$/.test(argument)) return new URL(argument, new URL("../", functionsDir));
  throw new TypeError(
    `Cannot run '${argument}': give a function name, such as task_a, or the path of its module`,
  );
}

async function moduleMissing(module: URL, functionsDir: URL): Promise<string | undefined> {
  try {
    if ((await Deno.stat(module)).isFile) return undefined;
  } catch {
    // Reported below.
  }
  const available = [];
  try {
    for await (const entry of Deno.readDir(functionsDir)) {
      if (entry.isFile && entry.name.endsWith(".ts") && !entry.name.endsWith("_test.ts")) {
        available.push(entry.name.slice(0, -3));
      }
    }
  } catch {
    // Nothing to suggest.
  }
  const where = module.pathname.startsWith(functionsDir.pathname)
    ? `functions/${module.pathname.slice(functionsDir.pathname.length)}`
    : module.pathname;
  const name = where.replace(/^.*\//, "").replace(/\.[a-z]+$/, "");
  return `Cannot run function '${name}' as ${where} does not exist${
    available.length ? `: use one of ${available.sort().join(", ")}` : ""
  }`;
}

/** Options for {@linkcode startHealthServer}. */
interface StartHealthServerOptions {
  port: number;
  metrics: WorkerMetrics;
  labels: () => { function: string; queue: string };
  consuming: () => boolean;
  log: Logger;
}

/**
 * Serves `/healthz` and `/metrics` unless the port is 0. A port in use or
 * not allowed is logged, and the worker goes on serving tasks without them:
 * its health check then fails, which is what should draw attention.
 */
function startHealthServer(options: StartHealthServerOptions): HealthServer | undefined {
  if (options.port === 0) return undefined;
  try {
    const server = serveHealth({
      port: options.port,
      consuming: options.consuming,
      metrics: () => options.metrics.render(options.labels(), options.consuming()),
    });
    options.log.info("Serving /healthz and /metrics", { port: server.port });
    return server;
  } catch (error) {
    const reason = error instanceof Deno.errors.AddrInUse
      ? "it is in use"
      : error instanceof Deno.errors.NotCapable
      ? "this process may not listen there (allow it with --allow-net)"
      : (error as Error).message;
    options.log.error(
      `Cannot serve /healthz and /metrics on port ${options.port} as ${reason}: set METRICS_PORT to a free port, or 0 to turn them off`,
      { port: options.port },
    );
    return undefined;
  }
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

/** Runs the worker process; resolves with its exit code. */
export async function main(args: string[]): Promise<number> {
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
  const log = createLogger({
    level: settings.logLevel,
    format: settings.logFormat,
    write: output.write,
    // Until the function is loaded, its lines name it by its file.
    fields: { function: provisionalName, queue: settings.queue, worker: workerId },
  });
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
    log,
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
    dropPermissions({ files: secretFiles });
    // Asked of Deno, not assumed: the line shows what this process holds now.
    const { givenUp, kept } = reportPermissions(secretFiles);
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
      sandbox = await startSandbox({ module, name: provisionalName, log });
    } catch (error) {
      await broker.close();
      throw error;
    }
    const queue = settings.queue ?? sandbox.info.queue;
    labels = { function: sandbox.info.name, queue };
    await runWorker(sandbox, {
      initial: broker,
      connect,
      metrics,
      onConsuming: (now) => consuming = now,
      signal: controller.signal,
      workerId: settings.workerId ?? `${sandbox.info.name}@${host}-${Deno.pid}`,
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
      log,
    });
  } catch (error) {
    if (error instanceof SandboxError) {
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
