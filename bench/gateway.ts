/**
 * `deno task bench --gateway`: the HTTP gateway (docs/gateway.md) beside
 * the client library it is built on, in one run, on one broker, with one
 * worker of task_a (no work) behind both. HTTP load comes from autocannon
 * on Node 20, installed by the benchmark into a cache folder of its own
 * (as the BullMQ peer is). Two shapes:
 *
 * - one call at a time: the p50 and p99 of a call through the gateway
 *   (fetch from this process, keep-alive: autocannon reports whole
 *   milliseconds) and through the client (in this process);
 *   the gateway's overhead is the difference of the p50s (target <= 1 ms);
 * - 1,000 calls at once: calls a second through the gateway (autocannon,
 *   1,000 connections) and through the client (`stream()`, a window of
 *   1,000); target: the gateway >= 0.8 of the client.
 *
 * @module
 */

import { join } from "node:path";
import { connect } from "../client/mod.ts";
import type { Broker } from "../core/broker/mod.ts";
import { deadLetterQueueOf, retryQueuesOf } from "../core/contract/names.ts";
import { addKeyToFile, newKey } from "../gateway/keys.ts";
import { CONSUMING, startDeno, workerArgs } from "./processes.ts";
import { cpuMsOf, treeCpuMs } from "./cpu.ts";
import { median, round } from "./stats.ts";
import { run } from "./peers/_process.ts";

/** The autocannon measured, pinned so that figures compare from run to run. */
export const AUTOCANNON_VERSION = "8.0.0";

/** The targets of docs/performance.md for the gateway. */
export const GATEWAY_TARGETS = { overheadP50Ms: 1, throughputRatio: 0.8 } as const;

/** What `--gateway` measures. */
export interface GatewayFigures {
  autocannon: string;
  node: string;
  sequential: {
    calls: number;
    client_p50_ms: number;
    client_p99_ms: number;
    gateway_p50_ms: number;
    gateway_p99_ms: number;
    overhead_p50_ms: number;
  };
  concurrent: {
    concurrency: number;
    calls: number;
    client_per_s: number;
    gateway_per_s: number;
    ratio: number;
    gateway_non_2xx: number;
    gateway_errors: number;
    /**
     * CPU per call at 1,000 at once, µs: the client library's caller (this
     * process) against the gateway, and the worker behind each. It shows the
     * gateway's cost apart from the load generator's, which shares the cores.
     */
    cpu_us_per_call: {
      client: { caller: number; worker: number };
      gateway: { gateway: number; worker: number };
    };
  };
  targets: { overhead_p50_ms: number; throughput_ratio: number };
  met: { overhead: boolean; throughput: boolean };
}

/** Where autocannon is installed: outside the repository. */
export function autocannonPrefix(): string {
  const cache = Deno.env.get("XDG_CACHE_HOME") || join(Deno.env.get("HOME") ?? "/tmp", ".cache");
  return join(cache, "task-system-bench", "autocannon");
}

async function ensureAutocannon(log: (line: string) => void): Promise<string> {
  const prefix = autocannonPrefix();
  const script = join(prefix, "node_modules", "autocannon", "autocannon.js");
  try {
    const manifest = JSON.parse(
      await Deno.readTextFile(join(prefix, "node_modules", "autocannon", "package.json")),
    );
    if (manifest.version === AUTOCANNON_VERSION) return script;
  } catch {
    // Not there yet.
  }
  log(`Installing autocannon@${AUTOCANNON_VERSION} into ${prefix} (npm)...`);
  await Deno.mkdir(prefix, { recursive: true });
  const npm = await run("npm", [
    "install",
    "--prefix",
    prefix,
    "--no-audit",
    "--no-fund",
    `autocannon@${AUTOCANNON_VERSION}`,
  ], { timeoutMs: 300_000 });
  if (!npm.success) {
    throw new Error(`Cannot install autocannon with npm: ${npm.stderr.slice(-2000)}`);
  }
  return script;
}

/** Why the gateway cannot be measured here, or undefined when it can. */
export async function gatewayBenchAvailable(): Promise<string | undefined> {
  const node = await run("node", ["--version"], { timeoutMs: 10_000 });
  if (!node.success) return "node is not on PATH: install Node.js 20 or later";
  if (!(Number(/^v(\d+)/.exec(node.stdout)?.[1]) >= 20)) {
    return `autocannon here needs Node.js 20 or later, found ${node.stdout}`;
  }
  return undefined;
}

interface AutocannonResult {
  latency: { p50: number; p99: number };
  duration: number;
  "2xx": number;
  non2xx: number;
  errors: number;
  timeouts: number;
}

async function autocannon(
  script: string,
  url: string,
  key: string,
  connections: number,
  amount: number,
): Promise<AutocannonResult> {
  const result = await run("node", [
    script,
    "-c",
    String(connections),
    "-a",
    String(amount),
    "-m",
    "POST",
    "-H",
    `authorization=Bearer ${key}`,
    "-H",
    "content-type=application/json",
    "-b",
    '{"work_ms":0}',
    "-j",
    url,
  ], { timeoutMs: 600_000 });
  if (!result.success) throw new Error(`autocannon failed: ${result.stderr.slice(-2000)}`);
  return JSON.parse(result.stdout);
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

/** Measures the gateway beside the client; see the module documentation. */
export async function measureGateway(options: {
  url: string;
  quick: boolean;
  /** A connection that may delete the queues the measurement made. */
  admin: Broker;
  say: (line: string) => void;
}): Promise<GatewayFigures> {
  const { url, quick, say } = options;
  const script = await ensureAutocannon(say);
  const dir = await Deno.makeTempDir({ prefix: "bench-gateway-" });
  const queue = `bench_gw_${crypto.randomUUID().slice(0, 8)}`;
  const registry = join(dir, "registry.yaml");
  await Deno.writeTextFile(registry, `functions:\n  task_a: { queue: ${queue} }\n`);
  const made = await newKey({
    functions: ["task_a"],
    events: [],
    rate: 1_000_000,
    burst: 1_000_000,
    inFlight: 1_000_000,
  });
  await addKeyToFile(join(dir, "keys.json"), made.record);
  const worker = startDeno(workerArgs("task_a"), {
    AMQP_URL: url,
    QUEUE: queue,
    CONCURRENCY: "256",
    METRICS_PORT: "0",
  });
  const gateway = startDeno([
    "run",
    "--allow-net",
    "--allow-env",
    "--allow-read",
    "--allow-write",
    "--allow-sys=hostname",
    "gateway/main.ts",
    "--listen",
    "127.0.0.1:0",
    "--registry",
    registry,
    "--keys-file",
    join(dir, "keys.json"),
    "--broker",
    url,
    "--max-connections",
    "2048",
    // A record of calls of its own, removed below with the rest.
    "--calls-name",
    queue,
  ]);
  const client = await connect({ url, functions: { task_a: queue }, connectionName: "bench-gw" });
  try {
    await worker.waitForLine(CONSUMING, 60_000);
    const line = await gateway.waitForLine(/listening on http:\/\/127\.0\.0\.1:\d+/, 60_000);
    const port = Number(/:(\d+) as/.exec(line)![1]);
    const target = `http://127.0.0.1:${port}/functions/task_a`;
    const [node] = [(await run("node", ["--version"])).stdout];

    // Warm-up of both paths.
    await autocannon(script, target, made.key, 10, quick ? 200 : 1000);
    for await (
      const _ of client.stream(
        Array.from({ length: quick ? 200 : 1000 }, () => ({
          function: "task_a",
          payload: { work_ms: 0 },
        })),
        { window: 10 },
      )
    ) { /* warm */ }

    const sequentialCalls = quick ? 300 : 3000;
    const latencies: number[] = [];
    for (let i = 0; i < sequentialCalls; i++) {
      const started = performance.now();
      await client.call("task_a", { work_ms: 0 });
      latencies.push(performance.now() - started);
    }
    latencies.sort((a, b) => a - b);
    // One call at a time through the gateway from this process (fetch,
    // keep-alive): autocannon reports whole milliseconds, too coarse here.
    const gatewayLatencies: number[] = [];
    const headers = { authorization: `Bearer ${made.key}`, "content-type": "application/json" };
    for (let i = 0; i < sequentialCalls; i++) {
      const started = performance.now();
      const response = await fetch(target, { method: "POST", headers, body: '{"work_ms":0}' });
      await response.arrayBuffer();
      if (response.status !== 200) throw new Error(`The gateway answered ${response.status}`);
      gatewayLatencies.push(performance.now() - started);
    }
    gatewayLatencies.sort((a, b) => a - b);
    const one = {
      latency: { p50: median(gatewayLatencies), p99: percentile(gatewayLatencies, 0.99) },
    };

    const concurrency = 1000;
    const concurrentCalls = quick ? 5_000 : 30_000;
    const cpu = () => ({
      self: cpuMsOf(Deno.pid) ?? 0,
      gateway: cpuMsOf(gateway.child.pid) ?? 0,
      worker: treeCpuMs(worker.child.pid) ?? 0,
    });
    const perCall = (ms: number) => Math.round(ms * 1000 / concurrentCalls);
    const before = cpu();
    const started = performance.now();
    for await (
      const _ of client.stream(
        Array.from({ length: concurrentCalls }, () => ({
          function: "task_a",
          payload: { work_ms: 0 },
        })),
        { window: concurrency },
      )
    ) { /* counted below */ }
    const clientPerS = concurrentCalls / ((performance.now() - started) / 1000);
    const between = cpu();
    const many = await autocannon(script, target, made.key, concurrency, concurrentCalls);
    const after = cpu();
    const gatewayPerS = many["2xx"] / many.duration;

    const clientP50 = median(latencies);
    const figures: GatewayFigures = {
      autocannon: AUTOCANNON_VERSION,
      node,
      sequential: {
        calls: sequentialCalls,
        client_p50_ms: round(clientP50, 2),
        client_p99_ms: round(percentile(latencies, 0.99), 2),
        gateway_p50_ms: round(one.latency.p50, 2),
        gateway_p99_ms: round(one.latency.p99, 2),
        overhead_p50_ms: round(one.latency.p50 - clientP50, 2),
      },
      concurrent: {
        concurrency,
        calls: concurrentCalls,
        client_per_s: Math.round(clientPerS),
        gateway_per_s: Math.round(gatewayPerS),
        ratio: round(gatewayPerS / clientPerS, 2),
        gateway_non_2xx: many.non2xx,
        gateway_errors: many.errors + many.timeouts,
        cpu_us_per_call: {
          client: {
            caller: perCall(between.self - before.self),
            worker: perCall(between.worker - before.worker),
          },
          gateway: {
            gateway: perCall(after.gateway - between.gateway),
            worker: perCall(after.worker - between.worker),
          },
        },
      },
      targets: {
        overhead_p50_ms: GATEWAY_TARGETS.overheadP50Ms,
        throughput_ratio: GATEWAY_TARGETS.throughputRatio,
      },
      met: {
        overhead: one.latency.p50 - clientP50 <= GATEWAY_TARGETS.overheadP50Ms,
        throughput: gatewayPerS / clientPerS >= GATEWAY_TARGETS.throughputRatio,
      },
    };
    return figures;
  } finally {
    await client.close();
    await gateway.stop();
    await worker.stop();
    const records = [
      `gateway.${queue}`,
      `replies.named.${new URL(url).username || "guest"}.${queue}`,
    ];
    for (const name of [queue, deadLetterQueueOf(queue), ...retryQueuesOf(queue), ...records]) {
      await options.admin.deleteQueue(name).catch(() => {});
    }
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** The lines that show `figures` and whether each target was met. */
export function formatGateway(figures: GatewayFigures): string[] {
  const s = figures.sequential;
  const c = figures.concurrent;
  const mark = (met: boolean) => met ? "met" : "MISSED";
  return [
    `Gateway (autocannon ${figures.autocannon}, Node ${figures.node}) beside the client library:`,
    `  one call at a time (${s.calls}): client p50 ${s.client_p50_ms} ms (p99 ${s.client_p99_ms}), gateway p50 ${s.gateway_p50_ms} ms (p99 ${s.gateway_p99_ms}); overhead ${s.overhead_p50_ms} ms, target <= ${figures.targets.overhead_p50_ms} ms: ${
      mark(figures.met.overhead)
    }`,
    `  ${c.concurrency} at once (${c.calls} calls): client ${c.client_per_s}/s, gateway ${c.gateway_per_s}/s (${c.gateway_non_2xx} non-2xx, ${c.gateway_errors} errors); ratio ${c.ratio}, target >= ${figures.targets.throughput_ratio}: ${
      mark(figures.met.throughput)
    }`,
    `  CPU per call at ${c.concurrency} at once: client library ${c.cpu_us_per_call.client.caller} µs (worker ${c.cpu_us_per_call.client.worker}), gateway ${c.cpu_us_per_call.gateway.gateway} µs (worker ${c.cpu_us_per_call.gateway.worker})`,
  ];
}
