/**
 * The reliability promises of docs/reliability.md, each against the RabbitMQ
 * at `AMQP_URL` with real worker processes, shaped so that a system that
 * broke the promise would fail the test.
 */

import assert from "node:assert/strict";
import type { Broker } from "../core/broker/mod.ts";
import { connectAmqp } from "../core/broker/amqp/connect_amqp.ts";
import {
  encodeRequest,
  parseProgress,
  parseReply,
  PROGRESS_MESSAGE_TYPE,
  retryQueuesOf,
  type TaskProgress,
  type TaskReply,
} from "../core/contract/mod.ts";
import { AMQP_URL, NEEDS_RABBITMQ } from "./_infra.ts";
import { deleteFunctionQueues, freePort, uniqueName, waitFor } from "./_helpers.ts";
import { type RunningProcess, startDeno, startWorkerProcess, workerArgs } from "./_processes.ts";

/** A caller with its replies and progress events, each stamped with when it arrived. */
async function caller(queue: string, task = "task_a") {
  const broker = await connectAmqp(AMQP_URL, { connectionName: "promises-test" });
  const replies = new Map<string, TaskReply & { at: number }>();
  const started: (TaskProgress & { seen: number })[] = [];
  const replyTo = await broker.openReplyQueue((message) => {
    if (message.properties.type === PROGRESS_MESSAGE_TYPE) {
      const parsed = parseProgress(message.body);
      if (parsed.ok && parsed.value.event === "started") {
        started.push({ ...parsed.value, seen: performance.now() });
      }
      return;
    }
    const parsed = parseReply(message.body);
    assert.ok(parsed.ok);
    replies.set(parsed.value.task_id!, { ...parsed.value, at: performance.now() });
  });
  return {
    broker,
    replies,
    started,
    send(taskId: string, payload: Record<string, unknown>, retry?: Record<string, number>) {
      return broker.publish(
        queue,
        encodeRequest(task, payload, { taskId, replyTo, progress: true, retry }),
      );
    },
    async close() {
      await deleteFunctionQueues(broker, queue);
      await broker.close();
    },
  };
}

async function stopAll(workers: RunningProcess[]) {
  for (const worker of workers) await worker.stop("SIGKILL");
}

Deno.test({
  name:
    "SIGTERM hands back the deliveries not started: another replica starts them while the first still works",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const queue = uniqueName("promise_handback");
    const c = await caller(queue);
    const env = { AMQP_URL, QUEUE: queue, CONCURRENCY: "1", PREFETCH: "4" };
    const first = await startWorkerProcess("task_a", env);
    let second: RunningProcess | undefined;
    try {
      for (let i = 0; i < 4; i++) await c.send(`t${i}`, { work_ms: 1500 });
      await waitFor(() => c.started.length === 1, "the first replica starts one");
      // The first replica holds all four: one running, three prefetched.
      await waitFor(
        async () => (await c.broker.inspectQueue(queue))?.messages === 0,
        "all four delivered to the first replica",
      );
      second = await startWorkerProcess("task_a", env);
      const stopping = first.stop("SIGTERM");
      await waitFor(() => c.replies.size === 4, "four replies", 20_000);
      assert.equal(await stopping, 0);
      const running = c.started[0];
      const firstDone = c.replies.get(running.task_id!)!;
      const secondWorker = c.started.find((s) => s.worker !== running.worker)?.worker;
      assert.ok(secondWorker, "the second replica started tasks");
      const handedBack = c.started.filter((s) => s.worker === secondWorker);
      assert.equal(handedBack.length, 3, "the three not started went to the second replica");
      assert.ok(
        handedBack[0].seen < firstDone.at,
        "the second replica started one before the first finished its own: it was handed back, not kept",
      );
      assert.equal(firstDone.worker, running.worker, "the running task finished where it ran");
    } finally {
      await stopAll([first, ...(second ? [second] : [])]);
      await c.close();
    }
  },
});

Deno.test({
  name:
    "retries wait in the broker: the retry sits in <queue>.retry.<ms>, the worker serves others meanwhile, and it survives a SIGKILL",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const queue = uniqueName("promise_retry");
    const c = await caller(queue);
    const env = { AMQP_URL, QUEUE: queue, CONCURRENCY: "1" };
    let worker = await startWorkerProcess("task_a", env);
    try {
      await c.send("retried", { fail_attempts: 1, work_ms: 0 }, {
        base_delay_ms: 3000,
        max_delay_ms: 3000,
      });
      await waitFor(
        () => worker.lines.some((l) => l.includes('"msg":"Task failed; retrying"')),
        "the first attempt failed",
      );
      const failedAt = performance.now();
      // One worker, one slot: it serves another task during the wait.
      await c.send("meanwhile", { work_ms: 0 });
      await waitFor(() => c.replies.has("meanwhile"), "served during the wait");
      assert.ok(!c.replies.has("retried"));
      const holding = await retryQueuesHolding(c.broker, queue);
      assert.equal(holding.length, 1, "the retry waits in one retry queue");
      // 3 s ± 20%, rounded to the ladder.
      assert.match(holding[0], /\.retry\.(2000|3000|5000)$/);
      // The worker dies during the wait: the retry is with the broker, not the worker.
      assert.notEqual(await worker.stop("SIGKILL"), 0);
      worker = await startWorkerProcess("task_a", env);
      await waitFor(() => c.replies.has("retried"), "the retry ran", 15_000);
      const reply = c.replies.get("retried")!;
      assert.equal(reply.status, "success");
      assert.equal(reply.attempts, 2);
      assert.ok(reply.at - failedAt >= 2000, "it waited its delay in the broker");
    } finally {
      await stopAll([worker]);
      await c.close();
    }
  },
});

/** The retry queues of `queue` (one per delay of the ladder) that hold a message now. */
async function retryQueuesHolding(broker: Broker, queue: string): Promise<string[]> {
  const found: string[] = [];
  for (const name of retryQueuesOf(queue)) {
    if (((await broker.inspectQueue(name))?.messages ?? 0) > 0) found.push(name);
  }
  return found;
}

Deno.test({
  name: "/healthz answers 503 while a worker drains, and a taken METRICS_PORT still serves tasks",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const queue = uniqueName("promise_health");
    const c = await caller(queue);
    const port = freePort();
    const worker = await startWorkerProcess("task_a", {
      AMQP_URL,
      QUEUE: queue,
      METRICS_PORT: String(port),
      SHUTDOWN_GRACE_MS: "10000",
    });
    // Something else holds the port the second worker is told to use.
    const squatter = Deno.listen({ hostname: "0.0.0.0", port: freePort() });
    const taken = (squatter.addr as Deno.NetAddr).port;
    let second: RunningProcess | undefined;
    try {
      const health = async () => {
        try {
          const response = await fetch(`http://127.0.0.1:${port}/healthz`);
          await response.body?.cancel();
          return response.status;
        } catch {
          return 0;
        }
      };
      assert.equal(await health(), 200);
      await c.send("long", { work_ms: 2000 });
      await waitFor(() => c.started.length === 1, "the long task started");
      worker.child.kill("SIGTERM");
      await waitFor(async () => (await health()) === 503, "503 while draining");
      assert.ok(!c.replies.has("long"), "still draining");
      await waitFor(() => c.replies.has("long"), "the task in flight finished", 10_000);
      assert.equal(await worker.stop(), 0);

      second = await startWorkerProcess("task_a", {
        AMQP_URL,
        QUEUE: queue,
        METRICS_PORT: String(taken),
      });
      assert.ok(
        second.lines.some((l) => l.includes(`Cannot serve /healthz and /metrics on port ${taken}`)),
        "it says the port is taken",
      );
      await c.send("served", { work_ms: 0 });
      await waitFor(() => c.replies.has("served"), "served without its health port");
    } finally {
      squatter.close();
      await stopAll([worker, ...(second ? [second] : [])]);
      await c.close();
    }
  },
});

Deno.test({
  name:
    "a slow task never holds others back: with two replicas the fast tasks finish long before it",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const queue = uniqueName("promise_fair");
    const c = await caller(queue);
    const env = { AMQP_URL, QUEUE: queue };
    const workers = [
      await startWorkerProcess("task_a", env),
      await startWorkerProcess("task_a", env),
    ];
    try {
      const sent = performance.now();
      await c.send("slow", { work_ms: 3000 });
      for (let i = 0; i < 10; i++) await c.send(`fast${i}`, { work_ms: 50 });
      await waitFor(() => c.replies.size === 11, "all replies", 20_000);
      const slow = c.replies.get("slow")!;
      const fast = [...c.replies.values()].filter((r) => r.task_id !== "slow");
      const lastFast = Math.max(...fast.map((r) => r.at)) - sent;
      console.log(
        `last fast task after ${lastFast.toFixed(0)} ms; the slow one after ${
          (slow.at - sent).toFixed(0)
        } ms`,
      );
      // Ordering, not a time bound: a fast task held behind the slow one (a
      // prefetch above 1) would finish after it.
      assert.ok(
        lastFast < slow.at - sent,
        `the fast tasks were not queued behind the slow one (${lastFast} ms)`,
      );
      assert.ok(fast.every((r) => r.worker !== slow.worker || r.at < slow.at));
    } finally {
      await stopAll(workers);
      await c.close();
    }
  },
});

Deno.test({
  name:
    "a CPU-bound task never holds others back: with two default replicas the quick tasks finish long before it",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const queue = uniqueName("promise_fair_cpu");
    const c = await caller(queue, "escape");
    // No CONCURRENCY or PREFETCH: the defaults, 64 tasks at once.
    const env = { AMQP_URL, QUEUE: queue };
    const workers = [
      await startWorkerProcess("tests/fixtures/functions/escape.ts", env),
      await startWorkerProcess("tests/fixtures/functions/escape.ts", env),
    ];
    try {
      // Holds its sandbox's thread for 1.5 s, never yielding.
      await c.send("spin", { attempt: "spin", target: "1500" });
      await waitFor(() => c.started.length === 1, "the CPU-bound task started");
      for (let i = 0; i < 10; i++) await c.send(`quick${i}`, {});
      await waitFor(() => c.replies.size === 11, "all replies", 20_000);
      const spin = c.replies.get("spin")!;
      const quick = [...c.replies.values()].filter((r) => r.task_id !== "spin");
      // An order, not a time: a quick task held behind the CPU-bound one
      // (taken by its worker and never handed on) would finish after it.
      assert.ok(
        quick.every((r) => r.at < spin.at),
        `every quick task ended before the CPU-bound one: ${
          quick.map((r) => `${r.task_id} on ${r.worker}`).join(", ")
        }`,
      );
      assert.ok(quick.every((r) => r.status === "success" && r.attempts === 1));
      const spinning = workers.find((w) => w.lines.some((l) => l.includes(spin.worker)))!;
      assert.ok(
        spinning.lines.some((l) => l.includes("handing back the tasks not started")) ||
          quick.every((r) => r.worker !== spin.worker),
        "its worker handed on what it had taken, or took none",
      );
    } finally {
      await stopAll(workers);
      await c.close();
    }
  },
});

Deno.test(
  "a worker that cannot reach the broker retries after 0.5 s, 1 s, 2 s (±20%), one log line per attempt",
  async () => {
    // Nothing listens on this port: every attempt fails at once, so the
    // spacing of the attempts is the worker's own backoff.
    const url = `amqp://guest:guest@127.0.0.1:${freePort()}`;
    const worker = startDeno(workerArgs("task_a"), { AMQP_URL: url, METRICS_PORT: "0" });
    const retrying = /"msg":"Broker not reachable; retrying"/;
    const attempts = () => worker.lines.filter((line) => retrying.test(line));
    try {
      await waitFor(() => attempts().length >= 3, "three failed attempts logged", 30_000, 50);
      const entries = attempts().slice(0, 3).map((line) => JSON.parse(line));
      assert.deepEqual(entries.map((e) => e.attempt), [1, 2, 3], "one line per attempt, counted");
      for (const [i, nominal] of [500, 1000, 2000].entries()) {
        const wait = entries[i].retry_in_ms;
        assert.ok(
          wait >= nominal * 0.8 && wait <= nominal * 1.2,
          `attempt ${i + 1} waits ${wait} ms, within ±20% of ${nominal} ms`,
        );
      }
      // A lower bound only: the next attempt comes no sooner than announced.
      const at = entries.map((e) => Date.parse(e.ts));
      for (let i = 1; i < 3; i++) {
        assert.ok(at[i] - at[i - 1] >= entries[i - 1].retry_in_ms - 5, JSON.stringify(entries));
      }
    } finally {
      await worker.stop();
    }
  },
);
