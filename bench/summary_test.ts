import assert from "node:assert/strict";
import type { Measurements } from "./measure.ts";
import type { PeerFigures } from "./peers/mod.ts";
import { buildDocument, formatBench, missesFail } from "./summary.ts";

const SETTINGS = {
  broker: "amqp://guest:***@localhost",
  quick: false,
  prefetch: 256,
  reps: 3,
  queueType: "quorum",
};
const STAGES = {
  publish_to_confirm: 2,
  publish_to_start: 3,
  worker_beyond_work: 2,
  reply_to_caller: 2,
  scheduling: 0.2,
};

function peer(name: "bullmq" | "celery", tps: number, seedOverheadMs: number): PeerFigures {
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
  rssMb: number;
  heapMb: [number, number];
  idleRssMb: number;
  readyMs: number;
  container: { ready_ms: number; image_mb: number } | undefined;
  bullmq: PeerFigures;
  celery: PeerFigures;
}

const MET: Figures = {
  productTps: 1000,
  limitTps: 1000,
  productSeedMs: 205,
  limitSeedMs: 206,
  rssMb: 140,
  heapMb: [20, 22],
  idleRssMb: 60,
  readyMs: 200,
  container: { ready_ms: 500, image_mb: 100 },
  bullmq: peer("bullmq", 500, 6),
  celery: peer("celery", 100, 8),
};

function measurements(change: Partial<Figures> = {}): Measurements {
  const f = { ...MET, ...change };
  const run = (tps: number, ms: number, rss = 100, heap = 20) => ({
    ms,
    tps,
    rss_mb: rss,
    heap_mb: heap,
    stages: STAGES,
  });
  const pairs = (product: number, limit: number, last = false) => ({
    product: f.heapMb.map((heap) => run(product, 1000, last ? f.rssMb : 100, heap)),
    limit: f.heapMb.map(() => run(limit, 1000)),
  });
  return {
    sizes: [1000, 10000],
    throughput: {
      "1000": pairs(f.productTps, f.limitTps),
      "10000": pairs(f.productTps, f.limitTps, true),
    },
    seed: {
      product: [run(0, f.productSeedMs), run(0, f.productSeedMs)],
      limit: [run(0, f.limitSeedMs), run(0, f.limitSeedMs)],
    },
    readyMs: [f.readyMs],
    idleRss: [f.idleRssMb],
    container: f.container,
    sandbox: { sandbox_us_per_task: 12, in_process_us_per_task: 3, cost_us_per_task: 9 },
    peers: { bullmq: f.bullmq, celery: f.celery },
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
  assert.deepEqual(checked.map((line) => line.replace(/: .*/, "").slice(8)), [
    "throughput ratio, 1,000 tasks",
    "throughput ratio, 10,000 tasks",
    "seed overhead / limit's",
    "throughput / bullmq's, 1,000 tasks",
    "throughput / bullmq's, 10,000 tasks",
    "seed overhead / BullMQ's",
    "throughput / celery's, 1,000 tasks",
    "throughput / celery's, 10,000 tasks",
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
  const cases: [Partial<Figures>, string[]][] = [
    [{ productTps: 890 }, [
      miss("throughput ratio, 1,000 tasks: 0.89 (target >= 0.9)"),
      miss("throughput ratio, 10,000 tasks: 0.89 (target >= 0.9)"),
    ]],
    [{ limitSeedMs: 204 }, [miss("seed overhead / limit's: 1.25 (target <= 1)")]],
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
    [{ bullmq: peer("bullmq", 500, 4) }, [miss("seed overhead / BullMQ's: 1.25 (target <= 1)")]],
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
    productTps: 900,
    productSeedMs: 206,
    rssMb: 150,
    heapMb: [20, 25],
    idleRssMb: 70,
    readyMs: 300,
    container: { ready_ms: 1000, image_mb: 150 },
    bullmq: peer("bullmq", 600, 6),
    celery: peer("celery", 225, 8),
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
