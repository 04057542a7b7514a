/**
 * The benchmark's document (what `--json` prints and the results file
 * holds), its targets from README.md "Performance", and the table people
 * read.
 *
 * @module
 */

import type { Measurements, Sample } from "./measure.ts";
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
}

/** The benchmark's figures as one JSON document. */
export function buildDocument(m: Measurements, settings: BenchSettings) {
  const tps = (samples: Sample[]) => round(median(samples.map((s) => s.tps)));
  const limitTps: Record<string, number> = {};
  const productTps: Record<string, number> = {};
  const ratio: Record<string, number> = {};
  for (const size of m.sizes) {
    limitTps[size] = tps(m.throughput[size].limit);
    productTps[size] = tps(m.throughput[size].product);
    ratio[size] = round(productTps[size] / limitTps[size], 3);
  }
  const largest = m.throughput[m.sizes.at(-1)!].product;
  const seedOverhead = round(median(m.productSeed.map((s) => s.ms - 200)), 2);
  const limitSeedOverhead = round(median(m.limitSeed.map((s) => s.ms - 200)), 2);
  return {
    kind: "bench",
    at: new Date().toISOString(),
    quick: settings.quick,
    broker: settings.broker,
    cores: navigator.hardwareConcurrency,
    prefetch: settings.prefetch,
    reps: settings.reps,
    sizes: m.sizes,
    limit_tps: limitTps,
    product_tps: productTps,
    ratio,
    seed_overhead_ms_median: seedOverhead,
    limit_seed_overhead_ms_median: limitSeedOverhead,
    seed_overhead_ratio: round(seedOverhead / limitSeedOverhead, 3),
    dispatcher_rss_mb_max: round(Math.max(...largest.map((s) => s.rss_mb))),
    dispatcher_rss_mb_per_run: largest.map((s) => s.rss_mb),
    dispatcher_heap_mb_per_run: largest.map((s) => s.heap_mb),
    worker_idle_rss_mb: round(median(m.idleRss)),
    worker_ready_ms: round(median(m.readyMs)),
    container_ready_ms: m.container?.ready_ms ?? null,
    image_mb: m.container?.image_mb ?? null,
    samples: { throughput: m.throughput, limit_seed: m.limitSeed, product_seed: m.productSeed },
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
  return [
    ...d.sizes.map((size) => ({
      name: `throughput ratio, ${size.toLocaleString("en")} tasks`,
      value: d.ratio[size],
      limit: 0.8,
      kind: "min" as const,
      unit: "",
    })),
    max("seed overhead / limit's", d.seed_overhead_ratio, 1.2, ""),
    max(`dispatcher RSS, ${largest} tasks`, d.dispatcher_rss_mb_max, 150, " MB"),
    max(
      `dispatcher live heap growth over ${heap.length} runs in one process`,
      round(heap.at(-1)! - heap[0]),
      5,
      " MB",
    ),
    max("worker idle RSS", d.worker_idle_rss_mb, 60, " MB"),
    max("worker start to consuming (host)", d.worker_ready_ms, 300, " ms"),
    max("worker start to consuming (container)", d.container_ready_ms, 1000, " ms"),
    max("worker image size", d.image_mb, 150, " MB"),
  ];
}

/** The table and each target met or missed, as lines; and how many targets were missed. */
export function formatBench(d: BenchDocument): { lines: string[]; missed: number } {
  const rows: string[][] = [["measure", "limit (bare amqplib)", "product", "ratio"]];
  for (const size of d.sizes) {
    rows.push([
      `throughput, ${size.toLocaleString("en")} no-op tasks`,
      `${d.limit_tps[size].toFixed(0)} tasks/s`,
      `${d.product_tps[size].toFixed(0)} tasks/s`,
      d.ratio[size].toFixed(2),
    ]);
  }
  rows.push([
    "seed scenario overhead (median)",
    `${d.limit_seed_overhead_ms_median.toFixed(1)} ms`,
    `${d.seed_overhead_ms_median.toFixed(1)} ms`,
    d.seed_overhead_ratio.toFixed(2),
  ]);
  const per = `per ${d.sizes.at(-1)!.toLocaleString("en")}-task run`;
  const rss = d.dispatcher_rss_mb_per_run.map((r) => r.toFixed(0)).join(", ");
  const heap = d.dispatcher_heap_mb_per_run.map((h) => h.toFixed(1)).join(", ");
  rows.push([`dispatcher RSS ${per}`, "", `${rss} MB`, ""]);
  rows.push([`dispatcher heap ${per}`, "", `${heap} MB`, ""]);
  rows.push(["worker idle RSS", "", `${d.worker_idle_rss_mb} MB`, ""]);
  rows.push(["worker start to consuming, host", "", `${d.worker_ready_ms} ms`, ""]);
  if (d.container_ready_ms !== null) {
    rows.push(["worker start to consuming, container", "", `${d.container_ready_ms} ms`, ""]);
    rows.push(["worker image size", "", `${d.image_mb} MB`, ""]);
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
  const lines = [
    "",
    ...rows.map((row) => row.map((cell, i) => cell.padEnd(widths[i])).join("  ").trimEnd()),
    "",
  ];
  let missed = 0;
  for (const target of targetsOf(d)) {
    if (target.value === undefined) {
      lines.push(`  -     ${target.name}: not measured`);
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
