/**
 * The client library as a program uses it: examples/call_functions.ts runs
 * as its own process against RabbitMQ, with task_a and task_b served by two
 * real worker processes. With CI=true it is never skipped.
 */

import assert from "node:assert/strict";
import { connectAmqp } from "../core/broker/amqp/connect_amqp.ts";
import { deleteFunctionQueues, uniqueName } from "./_helpers.ts";
import { AMQP_URL, NEEDS_RABBITMQ } from "./_infra.ts";
import { runDeno, startWorkerProcess } from "./_processes.ts";
import { withTempDir } from "./_temp_dir.ts";

Deno.test({
  name: "examples/call_functions.ts calls task_a and task_b concurrently over RabbitMQ",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const qa = uniqueName("ex_queue_a");
    const qb = uniqueName("ex_queue_b");
    const a = await startWorkerProcess("task_a", { AMQP_URL, QUEUE: qa });
    const b = await startWorkerProcess("task_b", { AMQP_URL, QUEUE: qb }).catch(async (error) => {
      await a.stop();
      throw error;
    });
    try {
      await withTempDir(async (dir) => {
        const registry = `${dir}/registry.yaml`;
        await Deno.writeTextFile(
          registry,
          `functions:\n  task_a: { queue: ${qa} }\n  task_b: { queue: ${qb} }\n`,
        );
        const run = await runDeno(["run", "-A", "examples/call_functions.ts", registry], {
          AMQP_URL,
        });
        assert.equal(run.code, 0, run.stdout + run.stderr);
        assert.deepEqual(run.stdout.trim().split("\n"), [
          "task_a: Hello from Task A",
          "task_b: Hello from Task B",
        ]);
      });
      // Each worker ran its task once, and the two ran at the same time.
      const run = (lines: string[]) => {
        const done = lines.map((line) => JSON.parse(line))
          .filter((entry) => entry.msg === "Task succeeded");
        assert.equal(done.length, 1, lines.join("\n"));
        const end = Date.parse(done[0].ts);
        return { start: end - done[0].duration_ms, end };
      };
      const [ranA, ranB] = [run(a.lines), run(b.lines)];
      assert.ok(ranA.start < ranB.end && ranB.start < ranA.end, "the calls overlapped");
    } finally {
      assert.equal(await a.stop(), 0);
      assert.equal(await b.stop(), 0);
      const broker = await connectAmqp(AMQP_URL, { connectionName: "test-cleanup" });
      try {
        await deleteFunctionQueues(broker, qa, qb);
      } finally {
        await broker.close();
      }
    }
  },
});
