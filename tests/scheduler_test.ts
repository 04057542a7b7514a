/**
 * The scheduler on the host's RabbitMQ: two replicas and a worker, the
 * active replica killed mid-run. Counted from the worker's side (its
 * "Task succeeded" lines, one per run, named by task id): every tick of a
 * one-second schedule runs once, none is lost, and the standby fires the
 * first tick after the kill within 5 s of its time. Each run has a group of
 * replicas of its own (`--state-queue`) and a function queue of its own.
 */

import assert from "node:assert/strict";
import { connect } from "../core/broker/mod.ts";
import { AMQP_URL, NEEDS_RABBITMQ } from "./_infra.ts";
import { deleteFunctionQueues, uniqueName, waitFor } from "./_helpers.ts";
import { type RunningProcess, startDeno, startWorkerProcess } from "./_processes.ts";
import { withTempDir } from "./_temp_dir.ts";

const ACTIVE = /"msg":"Active: this replica fires/;
const WAITING = /"msg":"Waiting for the broker to make this replica the active one"/;

/** The JSON log lines of a process, parsed; other lines left out. */
function logOf(process: RunningProcess): Record<string, unknown>[] {
  return process.lines.flatMap((line) => {
    try {
      return line.startsWith("{") ? [JSON.parse(line)] : [];
    } catch {
      return [];
    }
  });
}

/** The task ids a worker ran to success, in its order, repeats included. */
function runsOf(worker: RunningProcess): string[] {
  return logOf(worker).filter((line) => line.msg === "Task succeeded").map((line) =>
    String(line.task_id)
  );
}

/** The ticks a scheduler replica fired: tick time and how late, from its log. */
function firedBy(replica: RunningProcess): { tick: number; lateMs: number }[] {
  return logOf(replica).filter((line) => line.msg === "Fired a tick").map((line) => ({
    tick: Date.parse(String(line.tick)),
    lateMs: Number(line.late_ms),
  }));
}

Deno.test({
  name:
    "two schedulers and a worker: SIGKILL the active one; the standby fires the next tick within 5 s; 60+ ticks of a one-second schedule run once each, none lost",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const queue = uniqueName("sched_fn");
    const stateQueue = uniqueName("sched_state");
    const processes: RunningProcess[] = [];
    await withTempDir(async (dir) => {
      const registry = `${dir}/registry.yaml`;
      await Deno.writeTextFile(
        registry,
        `functions:\n  task_a:\n    queue: ${queue}\n    schedule: { cron: "* * * * * *", payload: { work_ms: 10 } }\n`,
      );
      const replica = (id: string) =>
        startDeno([
          "run",
          "--allow-net",
          "--allow-env",
          `--allow-read=${dir}`,
          "--allow-sys=hostname",
          "scheduler/main.ts",
          `--registry=${registry}`,
          `--state-queue=${stateQueue}`,
          `--id=${id}`,
          `--broker=${AMQP_URL}`,
        ]);
      try {
        const worker = await startWorkerProcess("task_a", {
          AMQP_URL,
          QUEUE: queue,
          LOG_FORMAT: "json",
        });
        processes.push(worker);
        const first = replica("first");
        processes.push(first);
        await first.waitForLine(ACTIVE, 30_000);
        const second = replica("second");
        processes.push(second);
        await second.waitForLine(WAITING, 30_000);
        await waitFor(() => runsOf(worker).length >= 30, "30 ticks run", 60_000);

        const killedAt = Date.now();
        assert.equal(await first.stop("SIGKILL"), 137);
        await second.waitForLine(ACTIVE, 10_000);
        await waitFor(() => runsOf(worker).length >= 70, "70 ticks run", 90_000);
        assert.equal(await second.stop("SIGTERM"), 0);

        // The first tick due after the kill, fired by the standby on time.
        const afterKill = firedBy(second).filter(({ tick }) => tick > killedAt);
        assert.ok(afterKill.length > 0, "the standby fired");
        assert.ok(
          afterKill[0].lateMs <= 5000,
          `the standby fired the first tick after the kill ${afterKill[0].lateMs} ms late`,
        );

        // Counted from the worker's side: each tick once, every second between.
        const observer = await connect({ url: AMQP_URL });
        try {
          await waitFor(
            async () => (await observer.inspectQueue(queue))?.messages === 0,
            "the worker took every tick",
          );
        } finally {
          await observer.close();
        }
        const runs = runsOf(worker);
        const repeated = runs.filter((id, i) => runs.indexOf(id) !== i);
        assert.deepEqual(repeated, [], "no tick ran twice");
        const times = runs.map((id) => {
          const match = id.match(/^task_a@(.+)$/);
          assert.ok(match, `a tick id: ${id}`);
          return Date.parse(match[1]);
        }).sort((a, b) => a - b);
        const lost: string[] = [];
        for (let tick = times[0]; tick <= times.at(-1)!; tick += 1000) {
          if (!times.includes(tick)) lost.push(new Date(tick).toISOString());
        }
        assert.deepEqual(lost, [], "no tick lost between the first and the last");
        assert.ok(times.length >= 60, `${times.length} ticks`);
        assert.ok(
          times[0] < killedAt && times.at(-1)! > killedAt,
          "ticks on both sides of the kill",
        );
        // One replica fired at a time: only the tick in flight at the kill
        // may have gone out from both, and the worker ran it once.
        const byFirst = new Set(firedBy(first).map(({ tick }) => tick));
        const both = firedBy(second).filter(({ tick }) => byFirst.has(tick));
        assert.ok(both.length <= 1, `${both.length} ticks fired by both replicas`);
        const again = logOf(worker).filter((line) =>
          /^Answered a repeated request/.test(
            String(line.msg),
          )
        ).length;
        assert.ok(again <= 1, `${again} copies answered from the record`);
        console.log(
          `${times.length} ticks run once each; the first after the kill fired ${
            afterKill[0].lateMs
          } ms late; ${both.length} fired by both replicas, ${again} copy settled from the record`,
        );
      } finally {
        for (const process of processes) await process.stop("SIGKILL");
        const broker = await connect({ url: AMQP_URL });
        try {
          await deleteFunctionQueues(broker, queue);
          await broker.deleteQueue(stateQueue).catch(() => {});
        } finally {
          await broker.close();
        }
      }
    });
  },
});
