/**
 * The benchmark runs in CI in its short mode: this checks that it works and
 * writes every figure it promises, not the figures themselves.
 */

import assert from "node:assert/strict";
import { NEEDS_RABBITMQ } from "./_infra.ts";
import { runDeno } from "./_processes.ts";

Deno.test({
  name: "deno task bench --quick measures both sides and writes every promised figure",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const out = `${dir}/bench.json`;
      // Every pair of the quick bench, with its peers' installs: minutes, never a quarter hour.
      const run = await runDeno(["task", "bench", "--quick", "--out", out], {}, {
        timeoutMs: 900_000,
      });
      assert.equal(run.code, 0, run.stdout + run.stderr);
      assert.match(
        run.stdout,
        /^measure +limit \(bare amqplib\) +product +ratio \(median of pairs\) +pairs' spread +noise$/m,
      );
      assert.match(
        run.stdout,
        /^throughput, 1,000 no-op tasks \(quorum\) +\d+ tasks\/s +\d+ tasks\/s +[\d.]+ +[\d.]+-[\d.]+ +±[\d.]+%$/m,
      );
      assert.match(
        run.stdout,
        /^default worker, 1,000 tasks \(tuned 256 \/ default\) +\d+ tasks\/s +\d+ tasks\/s/m,
      );
      assert.match(run.stdout, /^Tail latency in an open loop/m);
      assert.match(run.stdout, /^CPU per task at 1,000 tasks:/m);
      assert.match(run.stdout, /^Where the seed scenario's milliseconds go/m);
      const document = JSON.parse(await Deno.readTextFile(out));
      for (const size of ["200", "1000"]) {
        for (const key of ["limit_tps", "product_tps", "ratio"]) {
          assert.ok(document[key][size] > 0, `${key}[${size}] is ${document[key][size]}`);
        }
        // The ratio is the median of the ratios of pairs run back to back.
        const { limit, product } = document.samples.throughput[size];
        const ratios = product.map((p: { tps: number }, i: number) => p.tps / limit[i].tps)
          .sort((a: number, b: number) => a - b);
        const middle = ratios.length / 2;
        const median = ratios.length % 2
          ? ratios[Math.floor(middle)]
          : (ratios[middle - 1] + ratios[middle]) / 2;
        assert.ok(Math.abs(document.ratio[size] - median) < 0.002, "ratio is the median of pairs");
        const spread = document.ratio_spread[size];
        assert.ok(spread.min <= spread.median && spread.median <= spread.max);
        assert.ok(spread.noise_pct >= 0);
      }
      for (
        const stage of [
          "publish_to_confirm",
          "publish_to_start",
          "worker_beyond_work",
          "reply_to_caller",
          "scheduling",
        ]
      ) {
        assert.equal(typeof document.seed_stages_ms_median[stage], "number", stage);
      }
      assert.equal(typeof document.peers, "object");
      assert.ok(document.sandbox_cost.sandbox_us_per_task > 0);
      assert.ok(document.sandbox_cost.in_process_us_per_task > 0);
      for (
        const key of [
          "seed_overhead_ms_median",
          "limit_seed_overhead_ms_median",
          "worker_idle_rss_mb",
          "worker_ready_ms",
          "dispatcher_rss_mb_max",
        ]
      ) {
        assert.equal(typeof document[key], "number", key);
        assert.ok(Number.isFinite(document[key]), key);
      }
      // Every task took at least its own work: overhead cannot be far below zero.
      assert.ok(document.seed_overhead_ms_median > -1);
      assert.deepEqual(Object.keys(document.by_queue_type), ["quorum"]);
      for (const load of ["50", "80"]) {
        for (const side of ["limit", "product"]) {
          const open = document.open_loop[load][side];
          assert.ok(open.rate > 0 && open.p50 > 0 && open.p99 >= open.p50, `${load} ${side}`);
        }
      }
      for (const side of ["limit", "product"]) {
        const cpu = document.cpu_us_per_task[side];
        assert.ok(cpu.client > 0 && cpu.server > 0, `${side}: ${JSON.stringify(cpu)}`);
      }
      assert.ok(document.default_worker.default_tps > 0 && document.default_worker.ratio > 0);
      assert.ok(document.isolation.process_tps > 0 && document.isolation.thread_tps > 0);
      // Fan-outs at scale, small in --quick: each tool ran and wrote every task.
      assert.ok(document.scale.stream_tps > 0 && document.scale.stream_peak_rss_mb > 0);
      assert.equal(document.scale.dispatch.passed, document.scale.dispatch.tasks);
      assert.ok(document.scale.load.peak_rss_mb > 0);
      assert.ok(document.worker_idle_rss_mb > 10 && document.worker_ready_ms > 0);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
