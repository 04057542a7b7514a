/**
 * Calls that outlive their caller, against the RabbitMQ at `AMQP_URL`: a
 * fan-out of 10,000 calls by `deno task load --name` is killed (SIGKILL)
 * mid-run, started again with the same name, and every result is collected
 * exactly once, counted from both ends: the caller's journal holds each id
 * once, and the workers' logs show each call run once.
 */

import assert from "node:assert/strict";
import { connectAmqp } from "../core/broker/amqp/connect_amqp.ts";
import { namedReplyQueueOf } from "../core/contract/named_callers.ts";
import { countLogged } from "./_fault_tally.ts";
import { AMQP_URL, NEEDS_RABBITMQ } from "./_infra.ts";
import { deleteFunctionQueues, uniqueName, waitFor } from "./_helpers.ts";
import { holdEngine } from "./_engine_lock.ts";
import { runDeno, startDeno, startWorkerProcess } from "./_processes.ts";
import { withTempDir } from "./_temp_dir.ts";

const TASKS = 10_000;

/** `deno task load`'s command (deno.json), without the task runner in between. */
const LOAD_RUN: string[] = (() => {
  const config = JSON.parse(Deno.readTextFileSync(new URL("../deno.json", import.meta.url)));
  const [, ...args] = (config.tasks.load.command as string).split(" ");
  return args;
})();

/** The journal's lines: one per collected call. */
async function journalIds(path: string): Promise<string[]> {
  const text = await Deno.readTextFile(path).catch(() => "");
  return text.split("\n").flatMap((line) => {
    try {
      return [JSON.parse(line).id as string];
    } catch {
      return [];
    }
  });
}

Deno.test({
  name:
    "a fan-out of 10,000 survives its caller's SIGKILL mid-run: restarted under its name, it collects every result exactly once, and no call runs twice",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    // Never beside the cluster suite: see tests/_engine_lock.ts.
    await using _engine = await holdEngine("shared");
    const queue = uniqueName("durable");
    const name = queue.replaceAll("_", "-");
    const workers = await Promise.all(
      [1, 2].map(() => startWorkerProcess("task_a", { AMQP_URL, QUEUE: queue, CONCURRENCY: "8" })),
    );
    const broker = await connectAmqp(AMQP_URL, { connectionName: "durable-calls-test" });
    try {
      await withTempDir(async (dir) => {
        const config = `${dir}/config.yml`;
        await Deno.writeTextFile(
          config,
          `functions:\n  task_a: { queue: ${queue}, user: guest }\n` +
            "scenarios:\n  s: { tasks: [{ task: task_a }] }\n",
        );
        const journal = `${dir}/calls.jsonl`;
        const flags = [
          "--name",
          name,
          "--tasks",
          String(TASKS),
          "--function",
          "task_a",
          "--work-ms",
          "0",
          "--concurrency",
          "1000",
          "--timeout-ms",
          "300000",
          "--config",
          config,
          "--broker",
          AMQP_URL,
          "--journal",
          journal,
          "--json",
          "--no-save",
        ];
        // Killed with some results collected and some calls not yet submitted:
        // at most 1,000 are in flight, so most calls wait to be sent then.
        // The program itself, not `deno task` (whose SIGKILL would leave its child running).
        const first = startDeno([...LOAD_RUN, ...flags], { NO_COLOR: "1" });
        try {
          // By its size, which costs nothing to read: a line takes under 1 KB.
          await waitFor(
            async () => ((await Deno.stat(journal).catch(() => undefined))?.size ?? 0) >= 1_000_000,
            "a thousand results or more collected before the kill",
            120_000,
            5,
          );
        } finally {
          await first.stop("SIGKILL");
        }
        const before = new Set(await journalIds(journal));
        assert.ok(before.size < TASKS, `killed mid-run: ${before.size} collected`);

        const second = await runDeno(["task", "-q", "load", ...flags], {}, { timeoutMs: 300_000 });
        assert.equal(second.code, 0, second.stderr.slice(-2000));
        const run = JSON.parse(second.stdout);
        assert.equal(run.tasks, TASKS);
        assert.equal(run.succeeded, TASKS, JSON.stringify(run.errors));
        // The caller's side: each id collected exactly once.
        const ids = await journalIds(journal);
        assert.equal(ids.length, TASKS, "one line per call");
        const expected = Array.from({ length: TASKS }, (_, n) => `${name}.${n}`);
        assert.deepEqual([...new Set(ids)].sort(), expected.sort());

        // The workers' side: each call ran exactly once, the restart notwithstanding.
        // A worker logs a task's line just after its reply: the last lines may
        // still be on their way when the caller has every outcome.
        const runs = new Map<string, number>();
        const count = () => {
          runs.clear();
          for (const worker of workers) {
            for (const [id, n] of countLogged(worker.lines, "Task succeeded")) {
              runs.set(id, (runs.get(id) ?? 0) + n);
            }
          }
          return runs.size;
        };
        await waitFor(() => count() >= TASKS, "every call's line in the workers' logs", 10_000)
          .catch(() => {});
        const twice = [...runs].filter(([, count]) => count > 1);
        assert.deepEqual(twice, [], "no call ran twice");
        assert.equal(runs.size, TASKS, "every call ran");
        const { collectedBefore, outstandingBefore, submitted } = run.resumed;
        assert.ok(collectedBefore >= before.size, "it read what the first run had collected");
        assert.equal(collectedBefore + outstandingBefore + submitted, TASKS, "each call once");
        assert.ok(outstandingBefore > 0, "calls of the first run were collected by the second");
        assert.ok(submitted > 0, "the second run sent what the first had not");

        console.log(
          `durable fan-out: ${before.size} collected before the kill; after it ${collectedBefore} in the journal, ${outstandingBefore} collected from the queue, ${submitted} sent; ${run.throughput} tasks/s`,
        );
      });
    } finally {
      for (const worker of workers) await worker.stop();
      await broker.deleteQueue(namedReplyQueueOf("guest", name)).catch(() => {});
      await deleteFunctionQueues(broker, queue).catch(() => {});
      await broker.close();
    }
  },
});
