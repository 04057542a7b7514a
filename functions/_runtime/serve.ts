/**
 * The process entry of a worker: reads its settings from the environment and
 * its secrets from files, gives up the permissions it needed for that,
 * connects to RabbitMQ and runs the function until SIGTERM or SIGINT, then
 * drains and exits 0. A function module calls it under `import.meta.main`.
 *
 * @module
 */

import { maskUrl } from "./broker.ts";
import type { FunctionDefinition } from "./define_function.ts";
import { dropPermissions } from "./drop_permissions.ts";
import { inWebWorker, serveEmbedded } from "./embedded_worker.ts";
import { type HealthServer, serveHealth } from "./health_server.ts";
import { createBufferedWriter, createLogger, type Logger } from "./log.ts";
import { WorkerMetrics } from "./metrics.ts";
import { type AmqpTarget, resolveAmqpTarget } from "./resolve_amqp_target.ts";
import { runWorker } from "./run_worker.ts";
import {
  DEFAULT_AMQP_URL,
  readWorkerSettings,
  WORKER_ENV_VARS,
  WORKER_IMAGE_FILES,
  type WorkerEnvVar,
} from "./worker_settings.ts";

function hostName(): string {
  try {
    return Deno.hostname();
  } catch {
    return "localhost";
  }
}

function readEnv(name: WorkerEnvVar): string | undefined {
  return Deno.env.get(name);
}

function imageHint(setting: string): string | undefined {
  const path = WORKER_IMAGE_FILES[setting as keyof typeof WORKER_IMAGE_FILES];
  return path && `the worker image reads ${setting} only from ${path}: mount the file there`;
}

/** Options for {@linkcode startHealthServer}. */
interface StartHealthServerOptions {
  port: number;
  metrics: WorkerMetrics;
  labels: { function: string; queue: string };
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
      metrics: () => options.metrics.render(options.labels, options.consuming()),
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

/**
 * Runs `definition` as a worker process on RabbitMQ and exits when it stops:
 * 0 after a signal, 1 after a fault no reconnection can fix, 2 for bad
 * settings or an unreadable secret file. Before the first task it revokes
 * reading its secret files, its variables and the host name, so that the
 * function's handler cannot (where they were granted by name, as in the
 * worker image). Inside a Web Worker (the embedded default) it serves the
 * starting thread instead.
 */
export async function serve(definition: FunctionDefinition): Promise<never> {
  if (inWebWorker()) return await serveEmbedded(definition);
  let settings;
  let target: AmqpTarget;
  try {
    settings = readWorkerSettings(readEnv);
    target = await resolveAmqpTarget(settings.amqp, {
      defaultUrl: DEFAULT_AMQP_URL,
      notCapableHint: imageHint,
    });
  } catch (error) {
    console.error((error as Error).message);
    console.error(`Worker settings are read from: ${WORKER_ENV_VARS.join(", ")}`);
    Deno.exit(2);
  }
  const workerId = settings.workerId ?? `${definition.name}@${hostName()}-${Deno.pid}`;
  const output = createBufferedWriter(Deno.stdout);
  // Deno.exit() and a normal end both dispatch "unload": no line is left behind.
  globalThis.addEventListener("unload", () => output.flush());
  const log = createLogger({
    level: settings.logLevel,
    format: settings.logFormat,
    write: output.write,
  });
  const controller = new AbortController();
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    Deno.addSignalListener(signal, () => controller.abort(signal));
  }
  // Imported here, not at the top, so that loading a function module (in a
  // test or an embedded Web Worker) does not load the AMQP client.
  const { connectAmqp } = await import("./amqp_broker.ts");
  dropPermissions({ files: target.files, variables: WORKER_ENV_VARS });
  const queue = settings.queue ?? definition.queue;
  const identity = { function: definition.name, queue, worker: workerId };
  log.info("Starting", {
    ...identity,
    broker: maskUrl(target.url),
    tls: target.tls ? Object.keys(target.tls).join(",") : undefined,
  });
  const metrics = new WorkerMetrics();
  let consuming = false;
  const health = startHealthServer({
    port: settings.metricsPort,
    metrics,
    labels: { function: definition.name, queue },
    consuming: () => consuming,
    log: log.child(identity),
  });
  try {
    await runWorker(definition, {
      metrics,
      onConsuming: (now) => consuming = now,
      connect: () => connectAmqp(target.url, { connectionName: workerId, tls: target.tls }),
      signal: controller.signal,
      workerId,
      queue: settings.queue,
      concurrency: settings.concurrency,
      prefetch: settings.prefetch,
      queueType: settings.queueType,
      maxMessageBytes: settings.maxMessageBytes,
      graceMs: settings.graceMs,
      log,
    });
  } catch (error) {
    log.error("Worker stopped on a fault it cannot recover from", { ...identity, error });
    Deno.exit(1);
  }
  await health?.shutdown();
  Deno.exit(0);
}
