import assert from "node:assert/strict";
import { type Broker, MemoryBroker } from "../core/broker/mod.ts";
import { encodeRequest } from "../core/contract/mod.ts";
import { defineFunction } from "../runtime/define_function.ts";
import { inProcessRunner } from "../runtime/handler_runner.ts";
import { startWorker } from "../runtime/worker/consumer.ts";
import { waitFor } from "../tests/_helpers.ts";
import { withTempDir } from "../tests/_temp_dir.ts";
import { CANCEL_EXIT, idsAsFlags, main } from "./cancel_main.ts";

const started: string[] = [];
const slow = defineFunction({
  name: "task_x",
  queue: "queue_x",
  timeoutMs: 60_000,
  async handler(_payload, context) {
    started.push(context.taskId!);
    await new Promise((_, reject) => {
      context.signal.addEventListener("abort", () => reject(context.signal.reason));
    });
  },
});

const CONFIG = "functions:\n  task_x: { queue: queue_x, user: workers_x }\n" +
  "scenarios:\n  s: { tasks: [{ task: task_x }] }\n";

async function run(args: string[], connect: () => Promise<Broker>, config: string) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main([...args, "--config", config, "--wait-ms", "200"], {
    out: (line) => out.push(line),
    err: (line) => err.push(line),
    env: () => undefined,
    color: { out: false, err: false },
    connect,
  });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

Deno.test("idsAsFlags() turns call ids into --id flags and keeps every flag as it was", () => {
  assert.deepEqual(idsAsFlags(["a1", "--wait-ms", "5", "b2", "--json"]), [
    "--wait-ms",
    "5",
    "--json",
    "--id",
    "a1",
    "--id",
    "b2",
  ]);
  assert.deepEqual(idsAsFlags(["--broker=amqp://x", "--", "-odd-id"]), [
    "--broker=amqp://x",
    "--id",
    "-odd-id",
  ]);
});

Deno.test("deno task cancel stops a running call, says so for one already cancelled, and exits by what happened", async () => {
  const hub = new MemoryBroker();
  const worker = await startWorker(inProcessRunner(slow), hub.connect("workers_x"), {
    workerId: "x@1",
  });
  try {
    await withTempDir(async (dir) => {
      const config = `${dir}/c.yml`;
      await Deno.writeTextFile(config, CONFIG);
      const caller = hub.connect("dispatcher");
      const replyTo = await caller.openReplyQueue(() => {});
      await caller.publish("queue_x", encodeRequest("task_x", {}, { taskId: "job-1", replyTo }));
      await waitFor(() => started.includes("job-1"), "the call running");
      const asDispatcher = () => Promise.resolve(hub.connect("dispatcher"));

      const stopped = await run(["job-1"], asDispatcher, config);
      assert.equal(stopped.code, 0, stopped.out + stopped.err);
      assert.match(stopped.out, /Cancelled call job-1: its running attempt on x@1 was stopped/);

      const again = await run(["job-1"], asDispatcher, config);
      assert.equal(again.code, CANCEL_EXIT.nothing, again.out);
      assert.match(again.out, /Nothing to cancel: call job-1 was cancelled already/);

      const queued = await run(["job-2", "--json"], asDispatcher, config);
      assert.equal(queued.code, 0);
      assert.equal(JSON.parse(queued.out).calls[0].status, "not_running");

      await caller.publish("queue_x", encodeRequest("task_x", {}, { taskId: "job-3", replyTo }));
      await waitFor(() => started.includes("job-3"), "another call running");
      const stranger = await run(["job-3"], () => Promise.resolve(hub.connect("task_b")), config);
      assert.equal(stranger.code, CANCEL_EXIT.refused);
      assert.match(
        stranger.err,
        /Cannot cancel call job-3 as broker user 'task_b' did not send it/,
      );
      // Several ids: the worst code.
      const both = await run(
        ["job-3", "job-1"],
        () => Promise.resolve(hub.connect("task_b")),
        config,
      );
      assert.equal(both.code, CANCEL_EXIT.refused);

      const none = await run([], asDispatcher, config);
      assert.equal(none.code, 2);
      assert.match(none.err, /Cannot cancel without a call id/);
    });
  } finally {
    await worker.stop(0);
    await hub.shutdown();
  }
});
