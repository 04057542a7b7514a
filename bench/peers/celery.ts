/**
 * The Celery peer: Debian's python3-celery with the given RabbitMQ as its
 * broker and rpc:// results, one prefork worker with a process per core
 * (celery_app.py) and one client process (celery_client.py). Each run uses
 * a queue of its own and deletes it at the end.
 *
 * @module
 */

import { maskUrl } from "../../core/broker/mod.ts";
import type { PeerFigures, RunPeerOptions } from "./_types.ts";
import { parseClientOutput, summarize } from "./_figures.ts";
import { round } from "../stats.ts";
import { cpuMarks, cpuSnapshot, listenerPid } from "../cpu.ts";
import { peerClientTimeoutMs, run, spawn, type Spawned, tail, treeRssMb } from "./_process.ts";

/** Debian ships Celery for its own Python only; a pyenv `python3` on PATH lacks it. */
export const PYTHON = "/usr/bin/python3";

const HERE = new URL(".", import.meta.url).pathname;
const INSTALL = "apt-get install -y python3-celery";

const DURABILITY = "Tasks are persistent messages on a durable RabbitMQ queue and survive a " +
  "broker restart (though published without confirms), but a crashed worker loses the tasks " +
  "it was running, acknowledged as they started (acks_late is off by default), and rpc:// " +
  "results are transient messages that a broker restart or the caller's disconnect loses.";

function pythonEnv(amqpUrl: string, queue: string): Record<string, string> {
  return {
    AMQP_URL: amqpUrl,
    CELERY_QUEUE: queue,
    // No __pycache__ folders in the repository.
    PYTHONDONTWRITEBYTECODE: "1",
  };
}

/** Why Celery cannot run here, or undefined when it can. */
export async function celeryAvailable(amqpUrl: string): Promise<string | undefined> {
  const celery = await run(PYTHON, ["-c", "import celery"], { timeoutMs: 10_000 });
  if (!celery.success) return `${PYTHON} cannot import celery: ${INSTALL}`;
  const ping = await run(PYTHON, ["celery_client.py", "ping"], {
    cwd: HERE,
    env: pythonEnv(amqpUrl, "bench_peers_ping"),
    timeoutMs: 15_000,
  });
  if (!ping.success) {
    return `RabbitMQ at ${maskUrl(amqpUrl)} does not answer: start it (apt-get install -y ` +
      `rabbitmq-server), or pass another URL (${ping.stderr.split("\n").at(-1)})`;
  }
  return undefined;
}

/** Runs the Celery peer; see {@linkcode runPeer}. */
export async function runCelery(options: RunPeerOptions & { runs: number }): Promise<PeerFigures> {
  const log = options.log ?? (() => {});
  const { signal } = options;
  const env = pythonEnv(options.amqpUrl, `bench_peers_${crypto.randomUUID().slice(0, 8)}`);
  const processes = navigator.hardwareConcurrency;
  let worker: Spawned | undefined;
  try {
    log(`Celery: prefork worker with ${processes} processes on ${maskUrl(options.amqpUrl)}...`);
    // Ready: the worker_ready signal (printed by celery_app.py), sent when
    // Celery logs "<name> ready.": the pool is up and the queue consumed.
    // Mingle and gossip are off: they only talk to other workers, and mingle
    // alone waits about a second for answers from workers that are not there.
    const spawnedAt = performance.now();
    worker = spawn(PYTHON, [
      "-m",
      "celery",
      "-A",
      "celery_app",
      "worker",
      "-Q",
      env.CELERY_QUEUE,
      "-P",
      "prefork",
      "-c",
      String(processes),
      "--without-mingle",
      "--without-gossip",
      "--without-heartbeat",
      // No log line per task: the worker would spend CPU the others do not.
      "-l",
      "WARNING",
    ], { cwd: HERE, env, signal });
    await worker.waitForLine(/^ready$/, 30_000);
    const readyMs = performance.now() - spawnedAt;
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const idleRssMb = treeRssMb(worker.child.pid);

    // The broker's CPU time too, when it runs on this machine.
    const broker = new URL(options.amqpUrl.split(",")[0]);
    const brokerPid = ["localhost", "127.0.0.1"].includes(broker.hostname)
      ? listenerPid(Number(broker.port || 5672))
      : undefined;
    const caller: { pid?: number } = {};
    const running = worker;
    const cpu = cpuMarks(() =>
      cpuSnapshot({ client: caller.pid, server: running.child.pid, broker: brokerPid })
    );
    const client = spawn(PYTHON, [
      "celery_client.py",
      "run",
      "--sizes",
      options.sizes.join(","),
      "--runs",
      String(options.runs),
      "--seed-runs",
      String(options.seedRuns),
      "--open-loop-ms",
      String(options.openLoopMs ?? 0),
    ], {
      cwd: HERE,
      env,
      signal,
      onErrLine: (line) => {
        cpu.onLine(line);
        if (!line.startsWith("cpu-mark")) log(line);
      },
    });
    caller.pid = client.child.pid;
    const status = await client.finish("The Celery client", peerClientTimeoutMs(options));
    if (!status.success) throw new Error(`The Celery client failed:\n${tail(client)}`);
    const figures = parseClientOutput(client.out.join("\n"));
    const v = figures.versions ?? {};
    return {
      name: "celery",
      version:
        `celery ${v.celery}, kombu ${v.kombu} (Python ${v.python}, RabbitMQ ${v.rabbitmq}, ` +
        `prefork x${processes}, rpc:// results)`,
      ...summarize(figures),
      idle_rss_mb: round(idleRssMb),
      ready_ms: round(readyMs),
      durability: DURABILITY,
      durability_level: "persistent, published without confirms, acked at start",
      ...(cpu.perTask() && { cpu_us_per_task: cpu.perTask() }),
    };
  } catch (error) {
    throw signal?.aborted ? signal.reason : error;
  } finally {
    await worker?.stop();
    // The worker declared a durable queue and exchange named after the run.
    const cleanup = await run(PYTHON, ["celery_client.py", "cleanup"], { cwd: HERE, env });
    if (!cleanup.success) {
      log(`Cannot delete Celery queue '${env.CELERY_QUEUE}': ${cleanup.stderr}`);
    }
  }
}
