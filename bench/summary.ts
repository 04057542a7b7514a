/**
 * The benchmark's document (what `--json` prints and the results file
 * holds), its targets (docs/performance.md), and the table people read.
 * Ratios are the median of per-pair ratios, each pair taken back to back;
 * next to each, its spread and the run's noise (the spread of the limit
 * alone), so that a reader can tell a regression from noise.
 *
 * @module
 */

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
  queueType: string;
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
export function pairedRatio(paired: Paired, figure: (s: Paired["limit"][number]) => number) {
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

/** The benchmark's figures as one JSON document. */
export function buildDocument(m: Measurements, settings: BenchSettings) {
  const tps = (samples: { tps: number }[]) => round(median(samples.map((s) => s.tps)));
  const limitTps: Record<string, number> = {};
  const productTps: Record<string, number> = {};
  const ratio: Record<string, number> = {};
  const ratioSpread: Record<string, PairedRatio> = {};
  for (const size of m.sizes) {
    limitTps[size] = tps(m.throughput[size].limit);
    productTps[size] = tps(m.throughput[size].product);
    ratioSpread[size] = pairedRatio(m.throughput[size], (s) => s.tps);
    ratio[size] = ratioSpread[size].median;
  }
  const largest = m.throughput[m.sizes.at(-1)!].product;
  const overhead = (samples: { ms: number }[]) => samples.map((s) => s.ms - 200);
  const seedOverhead = round(median(overhead(m.seed.product)), 2);
  const limitSeedOverhead = round(median(overhead(m.seed.limit)), 2);
  const stageNames = Object.keys(m.seed.product[0]?.stages ?? {});
  const stagesOf = (samples: Paired["product"]) =>
    Object.fromEntries(
      stageNames.map((name) => [
        name,
        round(
          median(samples.map((s) => (s.stages as unknown as Record<string, number>)?.[name] ?? 0)),
          2,
        ),
      ]),
    );
  const stages = stagesOf(m.seed.product);
  const limitStages = stagesOf(m.seed.limit);
  const peers: Record<string, PeerResult> = m.peers;
  const peerRatio: Record<string, Record<string, number>> = {};
  for (const [name, peer] of Object.entries(peers)) {
    if (!isPeer(peer)) continue;
    peerRatio[name] = Object.fromEntries(
      m.sizes.map((size) => [size, round(productTps[size] / peer.tps[size], 2)]),
    );
  }
  return {
    kind: "bench",
    at: new Date().toISOString(),
    quick: settings.quick,
    broker: settings.broker,
    cores: navigator.hardwareConcurrency,
    deno: Deno.version.deno,
    prefetch: settings.prefetch,
    reps: settings.reps,
    queue_type: settings.queueType,
    sizes: m.sizes,
    limit_tps: limitTps,
    product_tps: productTps,
    ratio,
    ratio_spread: ratioSpread,
    seed_overhead_ms_median: seedOverhead,
    limit_seed_overhead_ms_median: limitSeedOverhead,
    seed_overhead_ratio: round(seedOverhead / limitSeedOverhead, 3),
    seed_noise_pct: pairedRatio(m.seed, (s) => s.ms - 200).noise_pct,
    seed_stages_ms_median: stages,
    limit_seed_stages_ms_median: limitStages,
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
    samples: { throughput: m.throughput, seed: m.seed },
  };
}

/** The document of a benchmark run. */
export type BenchDocument = ReturnType<typeof buildDocument>;

function targetsOf(d: BenchDocument): Target[] {
  const heap = d.dispatcher_heap_mb_per_run;
  const largest = d.sizes.at(-1)!.toLocaleString("en");
  const max = (name: string, value: number | null | undefined, limit: number, unit: string) => ({
    name,
    value: value ?? undefined,
    limit,
    kind: "max" as const,
    unit,
  });
  const min = (name: string, value: number | undefined, limit: number) => ({
    name,
    value,
    limit,
    kind: "min" as const,
    unit: "",
  });
  const peerTargets: Target[] = [];
  for (const [name, ratios] of Object.entries(d.peer_ratio)) {
    const factor = name === "celery" ? 4 : 1.5;
    for (const size of d.sizes) {
      peerTargets.push(
        min(`throughput / ${name}'s, ${size.toLocaleString("en")} tasks`, ratios[size], factor),
      );
    }
    const peer = d.peers[name] as PeerFigures;
    if (name === "bullmq") {
      peerTargets.push(
        max(
          "seed overhead / BullMQ's",
          round(d.seed_overhead_ms_median / peer.seed_overhead_ms_median, 3),
          1,
          "",
        ),
      );
    }
  }
  return [
    ...d.sizes.map((size) =>
      min(`throughput ratio, ${size.toLocaleString("en")} tasks`, d.ratio[size], 0.9)
    ),
    max("seed overhead / limit's", d.seed_overhead_ratio, 1, ""),
    ...peerTargets,
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
  for (const size of d.sizes) {
    const spread = d.ratio_spread[size];
    rows.push([
      `throughput, ${size.toLocaleString("en")} no-op tasks`,
      `${d.limit_tps[size].toFixed(0)} tasks/s`,
      `${d.product_tps[size].toFixed(0)} tasks/s`,
      d.ratio[size].toFixed(2),
      `${spread.min.toFixed(2)}-${spread.max.toFixed(2)}`,
      `±${(spread.noise_pct / 2).toFixed(0)}%`,
    ]);
  }
  rows.push([
    "seed scenario overhead (median)",
    `${d.limit_seed_overhead_ms_median.toFixed(1)} ms`,
    `${d.seed_overhead_ms_median.toFixed(1)} ms`,
    d.seed_overhead_ratio.toFixed(2),
    "",
    `±${(d.seed_noise_pct / 2).toFixed(0)}%`,
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
  const stages = Object.entries(d.seed_stages_ms_median);
  if (stages.length > 0) {
    lines.push("Where the seed scenario's milliseconds go (task_b, the slower; medians, ms):");
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
      ...d.sizes.map((s) => `${s.toLocaleString("en")} tasks`),
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
