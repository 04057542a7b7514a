/**
 * The BullMQ peer: BullMQ on Node 20 with a Redis of its own (AOF, no RDB
 * snapshots) on a free loopback port, one worker process at concurrency
 * 256 (bullmq_worker.mjs) and one client process (bullmq_client.mjs). It
 * runs twice: with `appendfsync everysec`, Redis's default for AOF, and
 * with `appendfsync always`, which writes every command to disk before it
 * answers: the durability nearest the product's, whose requests reach a
 * worker only once the broker wrote them to disk.
 *
 * @module
 */

import { join } from "node:path";
import type { PeerFigures, RunPeerOptions } from "./_types.ts";
import { nodeMajor, parseClientOutput, redisVersion, summarize } from "./_figures.ts";
import { round } from "../stats.ts";
import { cpuMarks, cpuSnapshot } from "../cpu.ts";
import {
  freePort,
  peerClientTimeoutMs,
  run,
  spawn,
  type Spawned,
  tail,
  treeRssMb,
} from "./_process.ts";

/** The versions measured, pinned so that figures compare from run to run. */
export const BULLMQ_VERSION = "6.7.0";
/** The ioredis that BullMQ 6 needs beside it (an optional peer dependency). */
export const IOREDIS_VERSION = "6.0.0";

const HERE = new URL(".", import.meta.url).pathname;
const CONCURRENCY = 256;
const INSTALL_NODE = "apt-get install -y nodejs npm";

/** How often Redis writes its AOF to disk: every second, or before it answers each command. */
export type Fsync = "everysec" | "always";

// Redis writes the AOF before it replies; `everysec` fsyncs it each second:
// a Redis crash loses nothing acknowledged, a crash of the machine up to
// about 1 s; `always` fsyncs before it replies: a crash of the machine too
// loses nothing acknowledged.
const DURABILITY: Record<Fsync, string> = {
  everysec: "Jobs and results are kept in Redis with AOF and appendfsync everysec, so " +
    "they survive a restart of Redis or of the worker, but a crash of the machine can lose up " +
    "to about 1 s of acknowledged jobs, and a crashed worker's active jobs run again once " +
    "their lock lapses (30 s by default).",
  always: "Jobs and results are kept in Redis with AOF and appendfsync always: every write " +
    "is on disk before Redis answers it, so a crash of Redis, the worker or the machine " +
    "loses no acknowledged job; a crashed worker's active jobs run again once their lock " +
    "lapses (30 s by default).",
};

const DURABILITY_LEVEL: Record<Fsync, string> = {
  everysec: "AOF, fsync every second",
  always: "AOF, fsync every write",
};

/** Where BullMQ is installed: outside the repository, `npm install --prefix` style. */
export function bullmqPrefix(): string {
  const cache = Deno.env.get("XDG_CACHE_HOME") || join(Deno.env.get("HOME") ?? "/tmp", ".cache");
  return join(cache, "task-system-bench", "bullmq");
}

async function installedVersion(prefix: string, name: string): Promise<string | undefined> {
  try {
    const text = await Deno.readTextFile(join(prefix, "node_modules", name, "package.json"));
    return JSON.parse(text).version;
  } catch {
    return undefined;
  }
}

async function isInstalled(prefix: string): Promise<boolean> {
  return await installedVersion(prefix, "bullmq") === BULLMQ_VERSION &&
    await installedVersion(prefix, "ioredis") === IOREDIS_VERSION;
}

/** Why BullMQ cannot run here, or undefined when it can. */
export async function bullmqAvailable(): Promise<string | undefined> {
  const node = await run("node", ["--version"], { timeoutMs: 10_000 });
  if (!node.success) return `node is not on PATH: install Node.js 20 or later (${INSTALL_NODE})`;
  if (!(nodeMajor(node.stdout) >= 20)) {
    return `BullMQ needs Node.js 20 or later, found ${node.stdout}: ${INSTALL_NODE}`;
  }
  if (!await isInstalled(bullmqPrefix())) {
    const npm = await run("npm", ["--version"], { timeoutMs: 10_000 });
    if (!npm.success) {
      return `npm is not on PATH, and BullMQ is not in ${bullmqPrefix()}: ${INSTALL_NODE}`;
    }
  }
  const redis = await run("redis-server", ["--version"], { timeoutMs: 10_000 });
  if (!redis.success) return "redis-server is not on PATH: apt-get install -y redis-server";
  return undefined;
}

/** Installs the pinned BullMQ and ioredis into the cache folder unless they are there. */
async function ensureBullmq(log: (line: string) => void): Promise<string> {
  const prefix = bullmqPrefix();
  if (await isInstalled(prefix)) return prefix;
  log(`Installing bullmq@${BULLMQ_VERSION} and ioredis@${IOREDIS_VERSION} into ${prefix} (npm)...`);
  await Deno.mkdir(prefix, { recursive: true });
  const npm = await run("npm", [
    "install",
    "--prefix",
    prefix,
    "--no-audit",
    "--no-fund",
    `bullmq@${BULLMQ_VERSION}`,
    `ioredis@${IOREDIS_VERSION}`,
  ], { timeoutMs: 300_000 });
  if (!npm.success) throw new Error(`Cannot install BullMQ with npm: ${npm.stderr.slice(-2000)}`);
  return prefix;
}

async function startRedis(
  dir: string,
  fsync: Fsync,
  signal?: AbortSignal,
): Promise<{ redis: Spawned; port: number }> {
  const port = freePort();
  const redis = spawn("redis-server", [
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--dir",
    dir,
    "--appendonly",
    "yes",
    "--appendfsync",
    fsync,
    "--save",
    "",
    "--logfile",
    "",
  ], { signal });
  await redis.waitForLine(/Ready to accept connections/, 10_000);
  return { redis, port };
}

/** Runs the BullMQ peer with Redis's `fsync` policy; see {@linkcode runPeer}. */
export async function runBullmq(
  options: RunPeerOptions & { runs: number; fsync: Fsync },
): Promise<PeerFigures> {
  const log = options.log ?? (() => {});
  const { signal } = options;
  const prefix = await ensureBullmq(log);
  const dir = await Deno.makeTempDir({ prefix: "bench-peers-redis-" });
  const started: Spawned[] = [];
  try {
    const { redis, port } = await startRedis(dir, options.fsync, signal);
    started.push(redis);
    const env = {
      BULLMQ_PREFIX: prefix,
      REDIS_PORT: String(port),
      QUEUE: `bench_peers_${crypto.randomUUID().slice(0, 8)}`,
      CONCURRENCY: String(CONCURRENCY),
    };
    log(
      `BullMQ: Redis on 127.0.0.1:${port} (appendfsync ${options.fsync}), worker at concurrency ${CONCURRENCY}...`,
    );
    // Ready: the worker's 'ready' event, emitted once both its Redis
    // connections are up; it starts fetching jobs right then.
    const spawnedAt = performance.now();
    const worker = spawn("node", [join(HERE, "bullmq_worker.mjs")], { env, signal });
    started.push(worker);
    await worker.waitForLine(/^ready$/, 30_000);
    const readyMs = performance.now() - spawnedAt;
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const idleRssMb = treeRssMb(worker.child.pid);

    const caller: { pid?: number } = {};
    const cpu = cpuMarks(() =>
      cpuSnapshot({ client: caller.pid, server: worker.child.pid, broker: redis.child.pid })
    );
    const client = spawn("node", [
      join(HERE, "bullmq_client.mjs"),
      "--sizes",
      options.sizes.join(","),
      "--runs",
      String(options.runs),
      "--seed-runs",
      String(options.seedRuns),
      "--open-loop-ms",
      String(options.openLoopMs ?? 0),
    ], {
      env,
      signal,
      onErrLine: (line) => {
        cpu.onLine(line);
        if (!line.startsWith("cpu-mark")) log(line);
      },
    });
    caller.pid = client.child.pid;
    const status = await client.finish("The BullMQ client", peerClientTimeoutMs(options));
    if (!status.success) throw new Error(`The BullMQ client failed:\n${tail(client)}`);
    const figures = parseClientOutput(client.out.join("\n"));

    const [node, redisText] = await Promise.all([
      run("node", ["--version"]),
      run("redis-server", ["--version"]),
    ]);
    return {
      name: options.fsync === "always" ? "bullmq_always" : "bullmq",
      version: `bullmq ${BULLMQ_VERSION}, ioredis ${IOREDIS_VERSION} (Node ${node.stdout}, Redis ${
        redisVersion(redisText.stdout) ?? "?"
      }, AOF ${options.fsync})`,
      ...summarize(figures),
      idle_rss_mb: round(idleRssMb),
      ready_ms: round(readyMs),
      durability: DURABILITY[options.fsync],
      durability_level: DURABILITY_LEVEL[options.fsync],
      ...(cpu.perTask() && { cpu_us_per_task: cpu.perTask() }),
    };
  } catch (error) {
    // An abort kills the processes, whose end is then the error to hide.
    throw signal?.aborted ? signal.reason : error;
  } finally {
    for (const process of started.reverse()) await process.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
