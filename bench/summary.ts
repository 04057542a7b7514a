/**
 * The benchmark's document (what `--json` prints and the results file
 * holds), its targets (docs/performance.md), and the tables people read.
 * Ratios are the median of per-pair ratios, each pair taken back to back;
 * next to each, its spread and the run's noise (the spread of the limit
 * alone), so that a reader can tell a regression from noise.
 *
 * @module
 */

import type { RunSample } from "./client.ts";
import type { CoreFigures, OpenLoopPair } from "./core.ts";
import type { Paired } from "./driver.ts";
import type { Measurements, PeerResult } from "./measure.ts";
import type { PeerFigures } from "./peers/mod.ts";
import { median, round } from "./stats.ts";

/** A figure and the bound it must keep. */
interface Target {
  name: string;
  value: number | undefined;
  limit: number;
  /** `max`: value must be at most limit; `min`: at least. */
  kind: "max" | "min";
  unit: string;
}

/** How the run was made, for the document. */
export interface BenchSettings {
  /** The broker, password masked. */
  broker: string;
  quick: boolean;
  prefetch: number;
  reps: number;
  /** The queue types measured, the main one first. */
  queueTypes: string[];
}

/** A ratio of pairs: its median, its spread, and the limit's own noise. */
export interface PairedRatio {
  median: number;
  min: number;
  max: number;
  /** (max - min) / median of the limit's own figure, in percent. */
  noise_pct: number;
}

/** Per-pair ratios of `product / limit` of `figure`. */
export function pairedRatio(paired: Paired, figure: (s: RunSample) => number): PairedRatio {
  const ratios = paired.product.map((p, i) => figure(p) / figure(paired.limit[i]));
  const limits = paired.limit.map(figure);
  return {
    median: round(median(ratios), 3),
    min: round(Math.min(...ratios), 3),
    max: round(Math.max(...ratios), 3),
    noise_pct: round((Math.max(...limits) - Math.min(...limits)) / median(limits) * 100, 1),
  };
}

function isPeer(result: PeerResult | undefined): result is PeerFigures {
  return result !== undefined && !("skipped" in result);
}

const tpsOf = (samples: { tps: number }[]) => round(median(samples.map((s) => s.tps)));
const overheadOf = (samples: { ms: number }[]) => round(median(samples.map((s) => s.ms - 200)), 2);

/** CPU time per task of each process, in µs: median over the samples. */
export interface CpuPerTask {
  client: number | null;
  server: number | null;
  broker: number | null;
  total: number | null;
}

/** Each process's CPU time per task over `samples` of `tasks` tasks each, in µs (medians). */
export function cpuPerTask(samples: RunSample[], tasks: number): CpuPerTask {
  const of = (key: "client" | "server" | "broker") => {
    const values = samples.flatMap((s) => s.cpu_ms?.[key] ?? []);
    return values.length === 0 ? null : round(median(values) * 1000 / tasks, 1);
  };
  const parts = { client: of("client"), server: of("server"), broker: of("broker") };
  const known = Object.values(parts).filter((v): v is number => v !== null);
  return { ...parts, total: known.length === 0 ? null : round(known.reduce((a, b) => a + b), 1) };
}

function stagesOf(samples: RunSample[]): Record<string, number> {
  const names = Object.keys(samples[0]?.stages ?? {});
  return Object.fromEntries(
    names.map((name) => [
      name,
      round(
        median(samples.map((s) => (s.stages as unknown as Record<string, number>)?.[name] ?? 0)),
        2,
      ),
    ]),
  );
}

function openLoopOf(open: Record<string, OpenLoopPair>) {
  const side = (s: OpenLoopPair["limit"]) => ({
    rate: s.rate,
    tps: round(s.tps),
    p50: round(s.p50, 2),
    p99: round(s.p99, 2),
    max: round(s.max, 2),
  });
  return Object.fromEntries(
    Object.entries(open).map(([load, pair]) => [load, {
      limit: side(pair.limit),
      product: side(pair.product),
    }]),
  );
}

/** What one queue type's measurements say, for the document. */
function coreDocument(core: CoreFigures, sizes: number[]) {
  const limitTps: Record<string, number> = {};
  const productTps: Record<string, number> = {};
  const ratio: Record<string, number> = {};
  const ratioSpread: Record<string, PairedRatio> = {};
  for (const size of sizes) {
    limitTps[size] = tpsOf(core.throughput[size].limit);
    productTps[size] = tpsOf(core.throughput[size].product);
    ratioSpread[size] = pairedRatio(core.throughput[size], (s) => s.tps);
    ratio[size] = ratioSpread[size].median;
  }
  const largest = sizes.at(-1)!;
  const tasks = largest * Math.max(1, Math.floor(5000 / largest));
  const seedOverhead = overheadOf(core.seed.product);
  const limitSeedOverhead = overheadOf(core.seed.limit);
  return {
    limit_tps: limitTps,
    product_tps: productTps,
    ratio,
    ratio_spread: ratioSpread,
    seed_overhead_ms_median: seedOverhead,
    limit_seed_overhead_ms_median: limitSeedOverhead,
    seed_overhead_excess_ms: round(seedOverhead - limitSeedOverhead, 2),
    seed_overhead_ratio: round(seedOverhead / limitSeedOverhead, 3),
    seed_noise_pct: pairedRatio(core.seed, (s) => s.ms - 200).noise_pct,
    seed_stages_ms_median: stagesOf(core.seed.product),
    limit_seed_stages_ms_median: stagesOf(core.seed.limit),
    /** CPU per task at the largest size, each process: the caller, the server, the broker. */
    cpu_us_per_task: {
      limit: cpuPerTask(core.throughput[largest].limit, tasks),
      product: cpuPerTask(core.throughput[largest].product, tasks),
    },
    /** By share of the maximum: each side at that share of its own throughput at the largest size. */
    open_loop: openLoopOf(core.open),
  };
}

/** The benchmark's figures as one JSON document. */
export function buildDocument(m: Measurements, settings: BenchSettings) {
  const byType = Object.fromEntries(
    Object.entries(m.queueTypes).map(([type, core]) => [type, coreDocument(core, m.sizes)]),
  );
  const main = byType[settings.queueTypes[0]];
  const largestSize = m.sizes.at(-1)!;
  const largest = m.throughput[largestSize].product;
  const tasks = largestSize * Math.max(1, Math.floor(5000 / largestSize));
  const peers: Record<string, PeerResult> = m.peers;
  const peerRatio: Record<string, Record<string, number>> = {};
  for (const [name, peer] of Object.entries(peers)) {
    if (!isPeer(peer)) continue;
    peerRatio[name] = Object.fromEntries(
      m.sizes.map((size) => [size, round(main.product_tps[size] / peer.tps[size], 2)]),
    );
  }
  const v = m.variants;
  const defaultSpread = pairedRatio(v.defaultWorker, (s) => s.tps);
  const isolationSpread = pairedRatio(v.isolationThroughput, (s) => s.tps);
  const threadSeed = overheadOf(v.isolationSeed.limit);
  const processSeed = overheadOf(v.isolationSeed.product);
  const s = m.scale;
  const smallTps = tpsOf(s.stream_small);
  return {
    kind: "bench",
    at: new Date().toISOString(),
    quick: settings.quick,
    broker: settings.broker,
    cores: navigator.hardwareConcurrency,
    deno: Deno.version.deno,
    prefetch: settings.prefetch,
    reps: settings.reps,
    queue_type: settings.queueTypes[0],
    queue_types: settings.queueTypes,
    sizes: m.sizes,
    ...main,
    /** Each queue type's figures; the fields above are the first's. */
    by_queue_type: byType,
    default_worker: {
      tuned_window: settings.prefetch,
      tuned_tps: tpsOf(v.defaultWorker.limit),
      default_tps: tpsOf(v.defaultWorker.product),
      ratio: defaultSpread.median,
      ratio_spread: defaultSpread,
      cpu_us_per_task: {
        tuned: cpuPerTask(v.defaultWorker.limit, tasks),
        default: cpuPerTask(v.defaultWorker.product, tasks),
      },
    },
    isolation: {
      thread_tps: tpsOf(v.isolationThroughput.limit),
      process_tps: tpsOf(v.isolationThroughput.product),
      ratio: isolationSpread.median,
      ratio_spread: isolationSpread,
      thread_seed_overhead_ms_median: threadSeed,
      process_seed_overhead_ms_median: processSeed,
      cpu_us_per_task: {
        thread: cpuPerTask(v.isolationThroughput.limit, tasks),
        process: cpuPerTask(v.isolationThroughput.product, tasks),
      },
    },
    scale: {
      window: s.window,
      stream_small_count: s.stream_small_count,
      stream_small_tps: smallTps,
      stream_count: s.stream_big_count,
      stream_tps: round(s.stream_big.tps),
      stream_ratio: round(s.stream_big.tps / smallTps, 3),
      stream_peak_rss_mb: round(s.stream_big.peak_rss_mb),
      dispatch: s.dispatch,
      load: s.load,
    },
    dispatcher_rss_mb_max: round(Math.max(...largest.map((s) => s.rss_mb))),
    dispatcher_rss_mb_per_run: largest.map((s) => s.rss_mb),
    dispatcher_heap_mb_per_run: largest.map((s) => s.heap_mb),
    worker_idle_rss_mb: round(median(m.idleRss)),
    worker_ready_ms: round(median(m.readyMs)),
    container_ready_ms: m.container?.ready_ms ?? null,
    image_mb: m.container?.image_mb ?? null,
    ...(m.containerSkipped !== undefined && { container_skipped: m.containerSkipped }),
    sandbox_cost: m.sandbox,
    peers,
    peer_ratio: peerRatio,
    samples: {
      throughput: m.throughput,
      seed: m.seed,
      by_queue_type: m.queueTypes,
      variants: m.variants,
      scale: { stream_small: s.stream_small, stream_big: s.stream_big },
    },
  };
}

/** The document of a benchmark run. */
export type BenchDocument = ReturnType<typeof buildDocument>;

/** The throughput a peer must stay below the product's by, as a factor. */
export const PEER_FACTORS: Record<string, number> = { bullmq: 1.5, bullmq_always: 1.5, celery: 4 };

const thousands = (n: number) => n.toLocaleString("en");

function targetsOf(d: BenchDocument): Target[] {
  const heap = d.dispatcher_heap_mb_per_run;
  const largest = thousands(d.sizes.at(-1)!);
  const max = (name: string, value: number | null | undefined, limit: number, unit = "") => ({
    name,
    value: value ?? undefined,
    limit,
    kind: "max" as const,
    unit,
  });
  const min = (name: string, value: number | null | undefined, limit: number) => ({
    name,
    value: value ?? undefined,
    limit,
    kind: "min" as const,
    unit: "",
  });
  const byType: Target[] = [];
  for (const [type, q] of Object.entries(d.by_queue_type)) {
    for (const size of d.sizes) {
      byType.push(min(`throughput ratio, ${thousands(size)} tasks (${type})`, q.ratio[size], 0.85));
    }
    byType.push(
      max(`seed overhead beyond the limit's (${type})`, q.seed_overhead_excess_ms, 1, " ms"),
    );
    const half = q.open_loop["50"]?.product;
    byType.push(
      max(
        `p99 / p50 in an open loop at 50% of the maximum (${type})`,
        half && half.p50 > 0 ? round(half.p99 / half.p50, 2) : undefined,
        3,
      ),
    );
  }
  const peerTargets: Target[] = [];
  for (const [name, ratios] of Object.entries(d.peer_ratio)) {
    for (const size of d.sizes) {
      peerTargets.push(
        min(
          `throughput / ${name}'s, ${thousands(size)} tasks`,
          ratios[size],
          PEER_FACTORS[name] ?? 1,
        ),
      );
    }
  }
  const sc = d.scale;
  return [
    ...byType,
    ...peerTargets,
    min(
      `default worker / tuned (${d.default_worker.tuned_window}), ${largest} tasks`,
      d.default_worker.ratio,
      0.7,
    ),
    max(
      `client stream of ${thousands(sc.stream_count)} calls: caller's peak RSS`,
      sc.stream_peak_rss_mb,
      200,
      " MB",
    ),
    min(
      `client stream of ${thousands(sc.stream_count)} calls: throughput / at ${
        thousands(sc.stream_small_count)
      }`,
      sc.stream_ratio,
      0.9,
    ),
    max(
      `deno task dispatch of ${thousands(sc.dispatch.tasks)} tasks: peak RSS`,
      sc.dispatch.peak_rss_mb,
      400,
      " MB",
    ),
    max(
      `deno task load of ${thousands(sc.load.tasks)} tasks: peak RSS`,
      sc.load.peak_rss_mb,
      300,
      " MB",
    ),
    max(`dispatcher RSS, ${largest} tasks`, d.dispatcher_rss_mb_max, 150, " MB"),
    max(
      `dispatcher live heap growth over ${heap.length} runs in one process`,
      round(heap.at(-1)! - heap[0]),
      5,
      " MB",
    ),
    max("worker idle RSS", d.worker_idle_rss_mb, 70, " MB"),
    max("worker start to consuming (host)", d.worker_ready_ms, 300, " ms"),
    max("worker start to consuming (container)", d.container_ready_ms, 1000, " ms"),
    max("worker image size", d.image_mb, 150, " MB"),
  ];
}

function table(rows: string[][]): string[] {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => (row[i] ?? "").length)));
  return rows.map((row) => row.map((cell, i) => cell.padEnd(widths[i])).join("  ").trimEnd());
}

/**
 * Whether a run with `missed` targets missed fails (exit 1). A `--quick` run
 * never does: its few short pairs check that the benchmark works, and its
 * figures are too noisy to hold to a target.
 */
export function missesFail(missed: number, quick: boolean): boolean {
  return !quick && missed > 0;
}

const cpuText = (c: CpuPerTask) =>
  [c.client, c.server, c.broker, c.total].map((v) => v === null ? "-" : v.toFixed(0)).join(" / ");

/** The table and each target met or missed, as lines; and how many targets were missed. */
export function formatBench(d: BenchDocument): { lines: string[]; missed: number } {
  const rows: string[][] = [[
    "measure",
    "limit (bare amqplib)",
    "product",
    "ratio (median of pairs)",
    "pairs' spread",
    "noise",
  ]];
  for (const [type, q] of Object.entries(d.by_queue_type)) {
    for (const size of d.sizes) {
      const spread = q.ratio_spread[size];
      rows.push([
        `throughput, ${thousands(size)} no-op tasks (${type})`,
        `${q.limit_tps[size].toFixed(0)} tasks/s`,
        `${q.product_tps[size].toFixed(0)} tasks/s`,
        q.ratio[size].toFixed(2),
        `${spread.min.toFixed(2)}-${spread.max.toFixed(2)}`,
        `±${(spread.noise_pct / 2).toFixed(0)}%`,
      ]);
    }
    rows.push([
      `seed scenario overhead, median (${type})`,
      `${q.limit_seed_overhead_ms_median.toFixed(1)} ms`,
      `${q.seed_overhead_ms_median.toFixed(1)} ms`,
      `+${q.seed_overhead_excess_ms.toFixed(2)} ms`,
      "",
      `±${(q.seed_noise_pct / 2).toFixed(0)}%`,
    ]);
  }
  const dw = d.default_worker;
  rows.push([
    `default worker, ${thousands(d.sizes.at(-1)!)} tasks (tuned ${dw.tuned_window} / default)`,
    `${dw.tuned_tps.toFixed(0)} tasks/s`,
    `${dw.default_tps.toFixed(0)} tasks/s`,
    dw.ratio.toFixed(2),
    `${dw.ratio_spread.min.toFixed(2)}-${dw.ratio_spread.max.toFixed(2)}`,
  ]);
  const iso = d.isolation;
  rows.push([
    "sandbox in a process (thread / process): throughput",
    `${iso.thread_tps.toFixed(0)} tasks/s`,
    `${iso.process_tps.toFixed(0)} tasks/s`,
    iso.ratio.toFixed(2),
    `${iso.ratio_spread.min.toFixed(2)}-${iso.ratio_spread.max.toFixed(2)}`,
  ]);
  rows.push([
    "sandbox in a process (thread / process): seed overhead",
    `${iso.thread_seed_overhead_ms_median.toFixed(1)} ms`,
    `${iso.process_seed_overhead_ms_median.toFixed(1)} ms`,
  ]);
  const per = `per ${d.sizes.at(-1)!.toLocaleString("en")}-task run`;
  const rss = d.dispatcher_rss_mb_per_run.map((r) => r.toFixed(0)).join(", ");
  const heap = d.dispatcher_heap_mb_per_run.map((h) => h.toFixed(1)).join(", ");
  rows.push([`dispatcher RSS ${per}`, "", `${rss} MB`]);
  rows.push([`dispatcher heap ${per}`, "", `${heap} MB`]);
  rows.push(["worker idle RSS", "", `${d.worker_idle_rss_mb} MB`]);
  rows.push(["worker start to consuming, host", "", `${d.worker_ready_ms} ms`]);
  rows.push([
    "handler call, no-op: in process / sandboxed",
    "",
    `${d.sandbox_cost.in_process_us_per_task} / ${d.sandbox_cost.sandbox_us_per_task} µs`,
  ]);
  if (d.container_ready_ms !== null) {
    rows.push(["worker start to consuming, container", "", `${d.container_ready_ms} ms`]);
    rows.push(["worker image size", "", `${d.image_mb} MB`]);
  }
  const lines = ["", ...table(rows), ""];

  const sc = d.scale;
  lines.push("Fan-outs at scale (window 1,000):");
  lines.push(
    ...table([
      ["run", "tasks/s", "peak RSS"],
      [
        `client stream, ${thousands(sc.stream_small_count)} calls (median)`,
        sc.stream_small_tps.toFixed(0),
        "",
      ],
      [
        `client stream, ${thousands(sc.stream_count)} calls`,
        sc.stream_tps.toFixed(0),
        `${sc.stream_peak_rss_mb} MB`,
      ],
      [
        `deno task dispatch, ${thousands(sc.dispatch.tasks)} tasks, every report`,
        (sc.dispatch.tasks / (sc.dispatch.ms / 1000)).toFixed(0),
        `${sc.dispatch.peak_rss_mb} MB`,
      ],
      [
        `deno task load, ${thousands(sc.load.tasks)} tasks`,
        (sc.load.tasks / (sc.load.ms / 1000)).toFixed(0),
        `${sc.load.peak_rss_mb} MB`,
      ],
    ]).map((line) => `  ${line}`),
    "",
  );

  const tail: string[][] = [["system", "load", "rate", "p50", "p99", "max (ms)"]];
  for (const [type, q] of Object.entries(d.by_queue_type)) {
    for (const [load, pair] of Object.entries(q.open_loop)) {
      for (const [side, s] of [["limit", pair.limit], ["product", pair.product]] as const) {
        tail.push([
          `${side} (${type})`,
          `${load}%`,
          `${s.rate}/s`,
          s.p50.toFixed(1),
          s.p99.toFixed(1),
          s.max.toFixed(1),
        ]);
      }
    }
  }
  for (const [name, peer] of Object.entries(d.peers)) {
    if (!isPeer(peer) || !peer.open) continue;
    for (const [load, s] of Object.entries(peer.open)) {
      tail.push([
        name,
        `${load}%`,
        `${s.rate}/s`,
        s.p50.toFixed(1),
        s.p99.toFixed(1),
        s.max.toFixed(1),
      ]);
    }
  }
  lines.push("Tail latency in an open loop, at a share of each system's own maximum:");
  lines.push(...table(tail).map((line) => `  ${line}`), "");

  const cpu: string[][] = [["system", "caller / server / broker / total (µs per task)"]];
  for (const [type, q] of Object.entries(d.by_queue_type)) {
    cpu.push([`limit (${type})`, cpuText(q.cpu_us_per_task.limit)]);
    cpu.push([`product (${type})`, cpuText(q.cpu_us_per_task.product)]);
  }
  cpu.push(["default worker", cpuText(d.default_worker.cpu_us_per_task.default)]);
  cpu.push(["sandbox in a process", cpuText(d.isolation.cpu_us_per_task.process)]);
  for (const [name, peer] of Object.entries(d.peers)) {
    if (isPeer(peer) && peer.cpu_us_per_task) cpu.push([name, cpuText(peer.cpu_us_per_task)]);
  }
  lines.push(`CPU per task at ${thousands(d.sizes.at(-1)!)} tasks:`);
  lines.push(...table(cpu).map((line) => `  ${line}`), "");

  const stages = Object.entries(d.seed_stages_ms_median);
  if (stages.length > 0) {
    lines.push(
      `Where the seed scenario's milliseconds go (task_b, the slower; medians, ms; ${d.queue_type}):`,
    );
    lines.push(
      ...table([
        ["stage", "limit", "product", "product - limit"],
        ...stages.map(([name, ms]) => {
          const limit = d.limit_seed_stages_ms_median[name] ?? 0;
          return [
            name.replaceAll("_", " "),
            limit.toFixed(2),
            ms.toFixed(2),
            (ms - limit).toFixed(2),
          ];
        }),
      ]).map((line) => `  ${line}`),
      "",
    );
  }
  const peers = Object.entries(d.peers);
  if (peers.length > 0) {
    const peerRows: string[][] = [[
      "peer",
      "durability",
      ...d.sizes.map((s) => `${thousands(s)} tasks`),
      "seed overhead",
      "idle RSS",
      "ready",
      "product / peer",
    ]];
    for (const [name, peer] of peers) {
      if (!isPeer(peer)) {
        peerRows.push([name, `skipped: ${peer.skipped}`]);
        continue;
      }
      peerRows.push([
        peer.version,
        peer.durability_level ?? "",
        ...d.sizes.map((s) => `${peer.tps[s].toFixed(0)} tasks/s`),
        `${peer.seed_overhead_ms_median.toFixed(1)} ms`,
        `${peer.idle_rss_mb.toFixed(0)} MB`,
        `${peer.ready_ms.toFixed(0)} ms`,
        d.sizes.map((s) => d.peer_ratio[name][s].toFixed(2)).join(", "),
      ]);
    }
    lines.push(...table(peerRows), "");
  }
  let missed = 0;
  for (const target of targetsOf(d)) {
    if (target.value === undefined) {
      const skipped = d.container_skipped !== undefined &&
        (target.name.includes("container") || target.name.includes("image"));
      lines.push(
        `  -     ${target.name}: not measured${
          skipped ? " (the image did not build: see above)" : ""
        }`,
      );
      continue;
    }
    const met = target.kind === "min" ? target.value >= target.limit : target.value <= target.limit;
    if (!met) missed++;
    lines.push(
      `  ${met ? "met " : "MISS"}  ${target.name}: ${target.value}${target.unit} (target ${
        target.kind === "min" ? ">=" : "<="
      } ${target.limit}${target.unit})`,
    );
  }
  return { lines, missed };
}
