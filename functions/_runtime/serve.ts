/**
 * The process entry of a worker: reads its settings from the environment,
 * connects to RabbitMQ and runs the function until SIGTERM or SIGINT, then
 * drains and exits 0. A function module calls it under `import.meta.main`.
 *
 * @module
 */

import { maskUrl } from "./broker.ts";
import type { FunctionDefinition } from "./define_function.ts";
import { inWebWorker, serveEmbedded } from "./embedded_worker.ts";
import { createBufferedWriter, createLogger } from "./log.ts";
import { runWorker } from "./run_worker.ts";
import { readWorkerSettings, WORKER_ENV_VARS, type WorkerEnvVar } from "./worker_settings.ts";

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

/**
 * Runs `definition` as a worker process on RabbitMQ and exits when it stops:
 * 0 after a signal, 1 after a fault no reconnection can fix, 2 for bad settings.
 * Inside a Web Worker (the embedded default) it serves the starting thread
 * instead.
 */
export async function serve(definition: FunctionDefinition): Promise<never> {
  if (inWebWorker()) return await serveEmbedded(definition);
  let settings;
  try {
    settings = readWorkerSettings(readEnv);
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
  const { checkAmqpUrl, connectAmqp } = await import("./amqp_broker.ts");
  try {
    checkAmqpUrl(settings.amqpUrl);
  } catch (error) {
    console.error(`${(error as Error).message} (from AMQP_URL)`);
    Deno.exit(2);
  }
  log.info("Starting", {
    function: definition.name,
    queue: settings.queue ?? definition.queue,
    worker: workerId,
    broker: maskUrl(settings.amqpUrl),
  });
  try {
    await runWorker(definition, {
      connect: () => connectAmqp(settings.amqpUrl, { connectionName: workerId }),
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
    log.error("Worker stopped on a fault it cannot recover from", { error });
    Deno.exit(1);
  }
  Deno.exit(0);
}
