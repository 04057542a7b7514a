import assert from "node:assert/strict";
import type { OpenLoopSample, RunSample } from "./client.ts";
import type { CoreFigures } from "./core.ts";
import type { Measurements } from "./measure.ts";
import type { PeerFigures } from "./peers/mod.ts";
import { buildDocument, cpuPerTask, formatBench, missesFail } from "./summary.ts";

const SETTINGS = {
  broker: "amqp://guest:***@localhost",
  quick: false,
  prefetch: 256,
  reps: 3,
  queueTypes: ["quorum", "classic"],
};
const STAGES = {
  publish_to_confirm: 2,
  publish_to_start: 3,
  worker_beyond_work: 2,
  reply_to_caller: 2,
  scheduling: 0.2,
};

function peer(name: PeerFigures["name"], tps: number, seedOverheadMs: number): PeerFigures {
  return {
    name,
    version: `${name} test`,
    tps: { "1000": tps, "10000": tps },
    tps_samples: { "1000": [tps], "10000": [tps] },
    seed_overhead_ms_median: seedOverheadMs,
    seed_samples_ms: [200 + seedOverheadMs],
    idle_rss_mb: 60,
    ready_ms: 400,
    durability: "test",
  };
}

/** What a run that meets every target measures; `change` makes one figure miss. */
interface Figures {
  productTps: number;
  limitTps: number;
  productSeedMs: number;
  limitSeedMs: number;
  p50: number;
  p99: number;
  defaultTps: number;
  streamSmallTps: number;
  streamBigTps: number;
  streamRssMb: number;
  dispatchRssMb: number;
  loadRssMb: number;
  rssMb: number;
  heapMb: [number, number];
  idleRssMb: number;
  readyMs: number;
  container: { ready_ms: number; image_mb: number } | undefined;
  bullmq: PeerFigures;
  bullmqAlways: PeerFigures;
  celery: PeerFigures;
}

const MET: Figures = {
  productTps: 1000,
  limitTps: 1000,
  productSeedMs: 206.5,
  limitSeedMs: 206,
  p50: 4,
  p99: 10,
  defaultTps: 800,
  streamSmallTps: 1000,
  streamBigTps: 950,
  streamRssMb: 120,
  dispatchRssMb: 350,
  loadRssMb: 210,
  rssMb: 140,
  heapMb: [20, 22],
  idleRssMb: 60,
  readyMs: 200,
  container: { ready_ms: 500, image_mb: 100 },
  bullmq: peer("bullmq", 500, 6),
  bullmqAlways: peer("bullmq_always", 300, 7),
  celery: peer("celery", 100, 8),
};

function run(tps: number, ms: number, rss = 100, heap = 20): RunSample {
  return {
    ms,
    tps,
    rss_mb: rss,
    heap_mb: heap,
    stages: STAGES,
    cpu_ms: { client: 500, server: 800, broker: 1500 },
  };
}

function open(p50: number, p99: number): OpenLoopSample & { rate: number } {
  return { rate: 500, sent: 2500, tps: 500, p50, p99, max: p99 * 2 };
}

function measurements(change: Partial<Figures> = {}): Measurements {
  const f = { ...MET, ...change };
  const pairs = (product: number, limit: number, last = false) => ({
    product: f.heapMb.map((heap) => run(product, 1000, last ? f.rssMb : 100, heap)),
    limit: f.heapMb.map(() => run(limit, 1000)),
  });
  const core = (): CoreFigures => ({
    throughput: {
      "1000": pairs(f.productTps, f.limitTps),
      "10000": pairs(f.productTps, f.limitTps, true),
    },
    seed: {
      product: [run(0, f.productSeedMs), run(0, f.productSeedMs)],
      limit: [run(0, f.limitSeedMs), run(0, f.limitSeedMs)],
    },
    open: {
      "50": { limit: open(3, 8), product: open(f.p50, f.p99) },
      "80": { limit: open(4, 12), product: open(5, 30) },
    },
  });
  const quorum = core();
  return {
    sizes: [1000, 10000],
    queueTypes: { quorum, classic: core() },
    throughput: quorum.throughput,
    seed: quorum.seed,
    variants: {
      defaultWorker: {
        limit: [run(1000, 1000), run(1000, 1000)],
        product: [run(f.defaultTps, 1000), run(f.defaultTps, 1000)],
      },
      isolationThroughput: {
        limit: [run(1000, 1000), run(1000, 1000)],
        product: [run(900, 1000), run(900, 1000)],
      },
      isolationSeed: {
        limit: [run(0, 206), run(0, 206)],
        product: [run(0, 207), run(0, 207)],
      },
    },
    scale: {
      window: 1000,
      stream_small: [{ ms: 10_000, tps: f.streamSmallTps, peak_rss_mb: 90 }],
      stream_small_count: 10_000,
      stream_big: { ms: 1_000_000, tps: f.streamBigTps, peak_rss_mb: f.streamRssMb },
      stream_big_count: 1_000_000,
      dispatch: {
        tasks: 100_000,
        ms: 20_000,
        peak_rss_mb: f.dispatchRssMb,
        passed: 100_000,
        files_mb: { json: 88, junit: 42, html: 32 },
      },
      load: { tasks: 1_000_000, ms: 120_000, peak_rss_mb: f.loadRssMb, succeeded: 1_000_000 },
    },
    readyMs: [f.readyMs],
    idleRss: [f.idleRssMb],
    container: f.container,
    sandbox: { sandbox_us_per_task: 12, in_process_us_per_task: 3, cost_us_per_task: 9 },
    peers: { bullmq: f.bullmq, bullmq_always: f.bullmqAlways, celery: f.celery },
  };
}

function targets(change: Partial<Figures> = {}) {
  const { lines, missed } = formatBench(buildDocument(measurements(change), SETTINGS));
  const checked = lines.filter((line) => /^ {2}(met |MISS) {2}/.test(line));
  return { missed, checked, missedLines: checked.filter((line) => line.startsWith("  MISS")) };
}

Deno.test("formatBench() checks every target of docs/performance.md and counts none missed when all hold", () => {
  const { missed, checked } = targets();
  assert.equal(missed, 0, checked.join("\n"));
  const perType = (type: string) => [
    `throughput ratio, 1,000 tasks (${type})`,
    `throughput ratio, 10,000 tasks (${type})`,
    `seed overhead beyond the limit's (${type})`,
    `p99 / p50 in an open loop at 50% of the maximum (${type})`,
  ];
  assert.deepEqual(checked.map((line) => line.replace(/: [^:]*$/, "").slice(8)), [
    ...perType("quorum"),
    ...perType("classic"),
    "throughput / bullmq's, 1,000 tasks",
    "throughput / bullmq's, 10,000 tasks",
    "throughput / bullmq_always's, 1,000 tasks",
    "throughput / bullmq_always's, 10,000 tasks",
    "throughput / celery's, 1,000 tasks",
    "throughput / celery's, 10,000 tasks",
    "default worker / tuned (256), 10,000 tasks",
    "client stream of 1,000,000 calls: caller's peak RSS",
    "client stream of 1,000,000 calls: throughput / at 10,000",
    "deno task dispatch of 100,000 tasks: peak RSS",
    "deno task load of 1,000,000 tasks: peak RSS",
    "dispatcher RSS, 10,000 tasks",
    "dispatcher live heap growth over 2 runs in one process",
    "worker idle RSS",
    "worker start to consuming (host)",
    "worker start to consuming (container)",
    "worker image size",
  ]);
});

Deno.test("formatBench() counts each target missed, with the bound it missed", () => {
  const miss = (text: string) => `  MISS  ${text}`;
  const both = (text: (type: string) => string) => [miss(text("quorum")), miss(text("classic"))];
  const cases: [Partial<Figures>, string[]][] = [
    [
      { productTps: 840 },
      [
        miss("throughput ratio, 1,000 tasks (quorum): 0.84 (target >= 0.85)"),
        miss("throughput ratio, 10,000 tasks (quorum): 0.84 (target >= 0.85)"),
        miss("throughput ratio, 1,000 tasks (classic): 0.84 (target >= 0.85)"),
        miss("throughput ratio, 10,000 tasks (classic): 0.84 (target >= 0.85)"),
      ],
    ],
    [
      { productSeedMs: 207.5 },
      both((t) => `seed overhead beyond the limit's (${t}): 1.5 ms (target <= 1 ms)`),
    ],
    [
      { p99: 12.5 },
      both((t) => `p99 / p50 in an open loop at 50% of the maximum (${t}): 3.13 (target <= 3)`),
    ],
    [{ defaultTps: 690 }, [
      miss("default worker / tuned (256), 10,000 tasks: 0.69 (target >= 0.7)"),
    ]],
    [{ streamRssMb: 201 }, [
      miss("client stream of 1,000,000 calls: caller's peak RSS: 201 MB (target <= 200 MB)"),
    ]],
    [{ streamBigTps: 890 }, [
      miss("client stream of 1,000,000 calls: throughput / at 10,000: 0.89 (target >= 0.9)"),
    ]],
    [{ dispatchRssMb: 401 }, [
      miss("deno task dispatch of 100,000 tasks: peak RSS: 401 MB (target <= 400 MB)"),
    ]],
    [{ loadRssMb: 301 }, [
      miss("deno task load of 1,000,000 tasks: peak RSS: 301 MB (target <= 300 MB)"),
    ]],
    [{ rssMb: 150.5 }, [miss("dispatcher RSS, 10,000 tasks: 150.5 MB (target <= 150 MB)")]],
    [{ heapMb: [20, 25.6] }, [
      miss("dispatcher live heap growth over 2 runs in one process: 5.6 MB (target <= 5 MB)"),
    ]],
    [{ idleRssMb: 71 }, [miss("worker idle RSS: 71 MB (target <= 70 MB)")]],
    [{ readyMs: 301 }, [miss("worker start to consuming (host): 301 ms (target <= 300 ms)")]],
    [{ container: { ready_ms: 1001, image_mb: 100 } }, [
      miss("worker start to consuming (container): 1001 ms (target <= 1000 ms)"),
    ]],
    [{ container: { ready_ms: 500, image_mb: 151 } }, [
      miss("worker image size: 151 MB (target <= 150 MB)"),
    ]],
    [{ bullmq: peer("bullmq", 2000, 6) }, [
      miss("throughput / bullmq's, 1,000 tasks: 0.5 (target >= 1.5)"),
      miss("throughput / bullmq's, 10,000 tasks: 0.5 (target >= 1.5)"),
    ]],
    [{ bullmqAlways: peer("bullmq_always", 1000, 6) }, [
      miss("throughput / bullmq_always's, 1,000 tasks: 1 (target >= 1.5)"),
      miss("throughput / bullmq_always's, 10,000 tasks: 1 (target >= 1.5)"),
    ]],
    [{ celery: peer("celery", 300, 8) }, [
      miss("throughput / celery's, 1,000 tasks: 3.33 (target >= 4)"),
      miss("throughput / celery's, 10,000 tasks: 3.33 (target >= 4)"),
    ]],
  ];
  for (const [change, expected] of cases) {
    const { missed, missedLines } = targets(change);
    assert.deepEqual(missedLines, expected, JSON.stringify(change));
    assert.equal(missed, expected.length, JSON.stringify(change));
  }
});

Deno.test("formatBench() holds a figure equal to its bound as met", () => {
  const { missed, checked } = targets({
    productTps: 850,
    productSeedMs: 207,
    p99: 12,
    defaultTps: 700,
    streamRssMb: 200,
    streamBigTps: 900,
    dispatchRssMb: 400,
    loadRssMb: 300,
    rssMb: 150,
    heapMb: [20, 25],
    idleRssMb: 70,
    readyMs: 300,
    container: { ready_ms: 1000, image_mb: 150 },
    bullmq: peer("bullmq", 850 / 1.5, 6),
    celery: peer("celery", 212.5, 8),
  });
  assert.equal(missed, 0, checked.join("\n"));
});

Deno.test("formatBench() says which figures were not measured, and counts them as no miss", () => {
  const document = buildDocument(measurements({ container: undefined }), SETTINGS);
  const { lines, missed } = formatBench(document);
  assert.equal(missed, 0);
  assert.ok(lines.includes("  -     worker start to consuming (container): not measured"));
  assert.ok(lines.includes("  -     worker image size: not measured"));
});

Deno.test("cpuPerTask() gives each process's median CPU time per task in µs, and their sum", () => {
  const samples = [1, 3, 2].map((n) => ({
    ...run(1, 1),
    cpu_ms: { client: 100 * n, server: 200 * n, broker: null },
  }));
  assert.deepEqual(cpuPerTask(samples, 10_000), {
    client: 20,
    server: 40,
    broker: null,
    total: 60,
  });
  assert.deepEqual(cpuPerTask([run(1, 1)].map(({ cpu_ms: _, ...s }) => s), 10), {
    client: null,
    server: null,
    broker: null,
    total: null,
  });
});

Deno.test("buildDocument() names each peer's durability and keeps each queue type's figures", () => {
  const document = buildDocument(measurements(), SETTINGS);
  assert.deepEqual(Object.keys(document.by_queue_type), ["quorum", "classic"]);
  assert.equal(document.queue_type, "quorum");
  assert.equal(document.ratio["10000"], document.by_queue_type.quorum.ratio["10000"]);
  assert.equal(document.by_queue_type.quorum.seed_overhead_excess_ms, 0.5);
  // 500 + 800 + 1500 ms over 10,000 tasks.
  assert.equal(document.by_queue_type.quorum.cpu_us_per_task.product.total, 280);
  assert.equal(document.default_worker.ratio, 0.8);
  assert.equal(document.scale.stream_ratio, 0.95);
  for (const peer of Object.values(document.peers)) {
    assert.ok("durability" in peer && peer.durability.length > 0);
  }
});

Deno.test("missesFail() fails a full run that missed a target, never a --quick run", () => {
  assert.equal(missesFail(0, false), false);
  assert.equal(missesFail(1, false), true);
  assert.equal(
    missesFail(3, true),
    false,
    "--quick checks that the benchmark works, not its figures",
  );
  assert.equal(missesFail(0, true), false);
});
