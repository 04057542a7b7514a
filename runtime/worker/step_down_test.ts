/**
 * A worker that takes many tasks at once steps down while a handler holds
 * its sandbox (step_down.ts): real sandboxes running a fixture whose
 * handler can spin, real workers, the in-memory broker.
 */

import assert from "node:assert/strict";
import { MemoryBroker } from "../../core/broker/mod.ts";
import { encodeRequest, parseReply, type TaskReply } from "../../core/contract/mod.ts";
import { createLogger, SILENT_LOGGER } from "../../core/log.ts";
import { type Sandbox, startSandbox } from "../sandbox/sandbox.ts";
import { type RunningWorker, startWorker } from "./consumer.ts";
import { waitFor } from "../../tests/_helpers.ts";

const ESCAPE = new URL("../../tests/fixtures/functions/escape.ts", import.meta.url);
const QUEUE = "queue_escape";

type Reply = TaskReply & { at: number };

async function setUp(replicas: number, options: { stepUpAfterMs?: number } = {}) {
  const hub = new MemoryBroker();
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({ level: "info", write: (line) => lines.push(JSON.parse(line)) });
  const sandboxes: Sandbox[] = [];
  const workers: RunningWorker[] = [];
  for (let i = 0; i < replicas; i++) {
    const sandbox = await startSandbox({ module: ESCAPE, log: SILENT_LOGGER });
    sandboxes.push(sandbox);
    workers.push(
      await startWorker(sandbox, hub.connect("escape"), {
        workerId: `escape@${i}`,
        concurrency: 8,
        log,
        ...options,
      }),
    );
  }
  const client = hub.connect("dispatcher");
  const replies = new Map<string, Reply>();
  const replyTo = await client.openReplyQueue((message) => {
    const parsed = parseReply(message.body);
    assert.ok(parsed.ok);
    replies.set(parsed.value.task_id!, { ...parsed.value, at: performance.now() });
  });
  return {
    workers,
    lines,
    replies,
    send: (taskId: string, payload: Record<string, unknown>) =>
      client.publish(QUEUE, encodeRequest("escape", payload, { taskId, replyTo })),
    async close() {
      for (const worker of workers) await worker.stop(0);
      for (const sandbox of sandboxes) await sandbox.close();
      await client.close();
      await hub.shutdown();
    },
  };
}

Deno.test("a task sent behind a CPU-bound handler goes to the idle replica: every quick task ends before the spinning one", async () => {
  const t = await setUp(2);
  try {
    // The first delivery goes to the first replica; the quick tasks alternate.
    await t.send("spin", { attempt: "spin", target: "1500" });
    await waitFor(() => t.workers[0].stats.inFlight === 1, "the spin task started");
    for (let i = 0; i < 10; i++) await t.send(`quick${i}`, {});
    await waitFor(() => t.replies.size === 11, "every reply", 10_000);
    const spin = t.replies.get("spin")!;
    const quick = [...t.replies.values()].filter((reply) => reply.task_id !== "spin");
    // An order, not a time: held behind the spin, a quick task would end after it.
    assert.ok(quick.every((reply) => reply.at < spin.at), "every quick task ended first");
    assert.ok(quick.every((reply) => reply.status === "success" && reply.attempts === 1));
    assert.equal(t.workers[0].stats.stepsDown, 1);
    assert.ok(t.workers[0].stats.handedBack >= 1, "it handed back what it had taken");
    assert.equal(t.workers[1].stats.stepsDown, 0);
    assert.ok(
      t.lines.some((line) => String(line.msg).includes("handing back the tasks not started")),
    );
  } finally {
    await t.close();
  }
});

/** Whether the tasks' runs (by the worker's clock) overlap one another. */
function overlapping(replies: TaskReply[]): boolean {
  const runs = replies.map((reply) => ({
    start: Date.parse(reply.started_at!),
    end: Date.parse(reply.finished_at!),
  })).sort((a, b) => a.start - b.start);
  return runs.some((run, i) => i > 0 && run.start < runs[i - 1].end);
}

Deno.test("after a CPU-bound handler a worker takes one task at a time, then its full window again once no handler held its sandbox for stepUpAfterMs", async () => {
  const t = await setUp(1, { stepUpAfterMs: 500 });
  try {
    await t.send("spin", { attempt: "spin", target: "200" });
    await waitFor(() => t.replies.has("spin"), "the spin task's reply");
    assert.equal(t.workers[0].stats.stepsDown, 1, "a handler held the sandbox: one step down");
    // Stepped down: one at a time, each starting after the one before ended.
    for (let i = 0; i < 3; i++) await t.send(`one${i}`, { attempt: "wait", target: "60" });
    await waitFor(() => t.replies.size === 4, "the stepped-down tasks");
    const one = [0, 1, 2].map((i) => t.replies.get(`one${i}`)!);
    assert.ok(!overlapping(one), "one at a time");
    await waitFor(
      () => t.lines.some((line) => String(line.msg).includes("taking the full window again")),
      "stepped up",
      5000,
    );
    for (let i = 0; i < 3; i++) await t.send(`all${i}`, { attempt: "wait", target: "300" });
    await waitFor(() => t.replies.size === 7, "the tasks after stepping up");
    const all = [0, 1, 2].map((i) => t.replies.get(`all${i}`)!);
    assert.ok(overlapping(all), "several at once again");
  } finally {
    await t.close();
  }
});

Deno.test("a worker with CONCURRENCY=1 and PREFETCH=1 never steps down: nothing waits in it", async () => {
  const hub = new MemoryBroker();
  const sandbox = await startSandbox({ module: ESCAPE, log: SILENT_LOGGER });
  const worker = await startWorker(sandbox, hub.connect("escape"), {
    workerId: "escape@single",
    concurrency: 1,
    prefetch: 1,
  });
  const client = hub.connect("dispatcher");
  let replies = 0;
  const replyTo = await client.openReplyQueue(() => replies++);
  try {
    const send = (taskId: string, payload: Record<string, unknown>) =>
      client.publish(QUEUE, encodeRequest("escape", payload, { taskId, replyTo }));
    await send("spin", { attempt: "spin", target: "300" });
    await send("next", {});
    await waitFor(() => replies === 2, "both replies");
    assert.equal(worker.stats.stepsDown, 0);
    assert.equal(worker.stats.handedBack, 0);
  } finally {
    await worker.stop(0);
    await sandbox.close();
    await client.close();
    await hub.shutdown();
  }
});
