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
      const run = await runDeno(["task", "bench", "--quick", "--out", out]);
      assert.equal(run.code, 0, run.stdout + run.stderr);
      assert.match(run.stdout, /^measure +limit \(bare amqplib\) +product +ratio$/m);
      assert.match(
        run.stdout,
        /^throughput, 1,000 no-op tasks +\d+ tasks\/s +\d+ tasks\/s +[\d.]+$/m,
      );
      const document = JSON.parse(await Deno.readTextFile(out));
      for (const size of ["200", "1000"]) {
        for (const key of ["limit_tps", "product_tps", "ratio"]) {
          assert.ok(document[key][size] > 0, `${key}[${size}] is ${document[key][size]}`);
        }
        assert.ok(
          Math.abs(document.ratio[size] - document.product_tps[size] / document.limit_tps[size]) <
            0.01,
          "ratio is product over limit",
        );
      }
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
      assert.ok(document.worker_idle_rss_mb > 10 && document.worker_ready_ms > 0);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
