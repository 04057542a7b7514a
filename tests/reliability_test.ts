/**
 * Reliability against the RabbitMQ at `AMQP_URL`, with real worker
 * processes: retry spacing, quorum queues, the grace period, and the
 * dispatcher's clear failures for a broker it cannot use.
 */

import assert from "node:assert/strict";
import { connectAmqp } from "../core/broker/amqp/connect_amqp.ts";
import type { Broker } from "../core/broker/mod.ts";
import {
  encodeRequest,
  parseProgress,
  parseReply,
  PROGRESS_MESSAGE_TYPE,
  type TaskProgress,
  type TaskReply,
} from "../core/contract/mod.ts";
import { deadLetterQueueOf, nearestRetryDelay, RETRY_DELAYS_MS } from "../core/contract/mod.ts";
import { AMQP_URL, NEEDS_RABBITMQ } from "./_infra.ts";
import { deleteFunctionQueues, uniqueName, waitFor } from "./_helpers.ts";
import { runDeno, startWorkerProcess } from "./_processes.ts";

async function session(queue: string) {
  const broker = await connectAmqp(AMQP_URL, { connectionName: "reliability-test" });
  const replies: TaskReply[] = [];
  const progress: TaskProgress[] = [];
  const replyTo = await broker.openReplyQueue((message) => {
    if (message.properties.type === PROGRESS_MESSAGE_TYPE) {
      const parsed = parseProgress(message.body);
      if (parsed.ok) progress.push(parsed.value);
      return;
    }
    const parsed = parseReply(message.body);
    assert.ok(parsed.ok);
    replies.push(parsed.value);
  });
  return {
    broker,
    replies,
    progress,
    send(payload: Record<string, unknown>, taskId: string, retry?: Record<string, number>) {
      return broker.publish(
        queue,
        encodeRequest("task_a", payload, { taskId, replyTo, progress: true, retry }),
      );
    },
  };
}

async function cleanup(broker: Broker, queue: string) {
  await deleteFunctionQueues(broker, queue);
  await broker.close();
}

Deno.test({
  name: "retries wait in the broker, and the waits grow exponentially within the jitter bounds",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const queue = uniqueName("rel_spacing");
    const worker = await startWorkerProcess("task_a", { AMQP_URL, QUEUE: queue });
    const s = await session(queue);
    try {
      // Long enough that a doubling (the bound below) leaves room for a loaded machine.
      const base = 1000;
      await s.send({ fail_attempts: 3, work_ms: 0 }, "spaced", {
        max_retries: 3,
        base_delay_ms: base,
        factor: 2,
      });
      await waitFor(() => s.replies.length === 1, "the reply after 3 retries", 30_000);
      assert.equal(s.replies[0].status, "success");
      assert.equal(s.replies[0].attempts, 4);
      const starts = s.progress.filter((p) => p.event === "started");
      const retries = s.progress.filter((p) => p.event === "retry");
      assert.deepEqual(starts.map((p) => p.attempt), [1, 2, 3, 4]);
      assert.deepEqual(retries.map((p) => p.attempt), [1, 2, 3]);
      const gaps: number[] = [];
      retries.forEach((retry, i) => {
        // The jitter's bounds, each rounded to the retry queues' ladder.
        const nominal = base * 2 ** i;
        const [low, high] = [nominal * 0.8, nominal * 1.2].map((ms) => nearestRetryDelay(ms));
        assert.ok(
          retry.delay_ms! >= low && retry.delay_ms! <= high,
          `retry ${i + 1} planned ${retry.delay_ms} ms, outside [${low}, ${high}]`,
        );
        assert.ok(RETRY_DELAYS_MS.includes(retry.delay_ms!), `${retry.delay_ms} is on the ladder`);
        const gap = Date.parse(starts[i + 1].at) - Date.parse(retry.at);
        gaps.push(gap);
        // The broker holds the message at least its TTL, and hands it back
        // before a wait of the next doubling would have ended. The retry's
        // `at` is stamped once the broker confirmed the copy, so its TTL began
        // up to a confirm's latency before it (6 ms once in CI, on a loaded
        // machine): 100 ms allow for that, and a retry the broker did not
        // hold (a gap near 0) still fails.
        assert.ok(
          gap >= retry.delay_ms! - 100 && gap < 2 * nominal,
          `retry ${i + 1} waited ${gap} ms for a planned ${retry.delay_ms} ms`,
        );
      });
      console.log(
        `retry gaps (ms): ${gaps.join(", ")} for nominal ${base}, ${base * 2}, ${base * 4}`,
      );
      assert.ok(gaps[0] < gaps[1] && gaps[1] < gaps[2], `gaps grow: ${gaps}`);
    } finally {
      assert.equal(await worker.stop(), 0);
      await cleanup(s.broker, queue);
    }
  },
});

Deno.test({
  name: "QUEUE_TYPE=quorum declares quorum queues and retries through them",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const queue = uniqueName("rel_quorum");
    const worker = await startWorkerProcess("task_a", {
      AMQP_URL,
      QUEUE: queue,
      QUEUE_TYPE: "quorum",
    });
    const s = await session(queue);
    try {
      await s.send({ fail_attempts: 1, work_ms: 0 }, "q1", { base_delay_ms: 50 });
      await waitFor(() => s.replies.length === 1, "reply", 10_000);
      assert.equal(s.replies[0].status, "success");
      assert.equal(s.replies[0].attempts, 2);
      // Declaring it as a classic queue now fails: it is a quorum queue.
      await assert.rejects(
        () => s.broker.declareQueue(queue),
        /exists with x-[a-z-]+ .* and this declaration asks for/,
      );
      await assert.rejects(
        () => s.broker.declareQueue(deadLetterQueueOf(queue)),
        /exists with x-[a-z-]+ .* and this declaration asks for/,
      );
    } finally {
      assert.equal(await worker.stop(), 0);
      await cleanup(s.broker, queue);
    }
  },
});

Deno.test({
  name: "a task that outlasts the grace period goes back to the queue and runs again",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const queue = uniqueName("rel_grace");
    const first = await startWorkerProcess("task_a", {
      AMQP_URL,
      QUEUE: queue,
      SHUTDOWN_GRACE_MS: "200",
    });
    const s = await session(queue);
    let second;
    try {
      await s.send({ work_ms: 3000 }, "long");
      await waitFor(() => s.progress.length === 1, "the task started");
      assert.equal(await first.stop("SIGTERM"), 0);
      // Stopped after the grace period, not the task: a worker that waited for the
      // task would have answered it (no reply below) and acked it (not returned).
      assert.ok(first.lines.some((line) => line.includes("Grace period over")));
      await waitFor(async () => (await s.broker.inspectQueue(queue))?.messages === 1, "returned");
      assert.equal(s.replies.length, 0);
      second = await startWorkerProcess("task_a", { AMQP_URL, QUEUE: queue });
      await waitFor(() => s.replies.length === 1, "the reply from the next worker", 10_000);
      assert.equal(s.replies[0].status, "success");
    } finally {
      await first.stop("SIGKILL");
      await second?.stop();
      await cleanup(s.broker, queue);
    }
  },
});

Deno.test({
  name: "the dispatcher fails clearly for wrong credentials and a malformed broker URL",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const wrong = new URL(AMQP_URL);
    wrong.password = "not-the-password";
    const started = Date.now();
    const refused = await runDeno(["task", "dispatch"], { AMQP_URL: wrong.toString() });
    assert.equal(refused.code, 3);
    assert.ok(Date.now() - started < 10_000);
    assert.match(refused.stderr, /refused the user name or password: check the credentials/);
    assert.ok(!refused.stderr.includes("not-the-password"), "password masked");

    const malformed = await runDeno(["task", "dispatch"], { AMQP_URL: "rabbit://somewhere" });
    assert.equal(malformed.code, 2);
    assert.match(malformed.stderr, /uses 'rabbit:': use amqp:\/\/, amqps:\/\//);
  },
});

Deno.test({
  name: "deno task dlq lists a queue's dead letters and replays them to the function",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const queue = uniqueName("rel_dlq");
    const worker = await startWorkerProcess("task_a", { AMQP_URL, QUEUE: queue });
    const s = await session(queue);
    try {
      await s.send({ fail_attempts: 1, work_ms: 0 }, "dead-1", { max_retries: 0 });
      await s.send({ work_ms: "slow" }, "dead-2");
      await waitFor(() => s.replies.length === 2, "two error replies");
      const dlq = deadLetterQueueOf(queue);
      await waitFor(async () => (await s.broker.inspectQueue(dlq))?.messages === 2, "two letters");

      const listed = await runDeno(["task", "dlq", "--queue", queue], { AMQP_URL });
      assert.equal(listed.code, 0, listed.stderr);
      assert.match(listed.stdout, new RegExp(`${dlq}: 2 dead letters`));
      assert.match(listed.stdout, /#1 exhausted SimulatedFailure: .*attempts: 1/);
      assert.match(listed.stdout, /#2 non_retryable InvalidPayload: .*payload\.work_ms/);
      assert.match(listed.stdout, /task dead-1, body: \{"task":"task_a"/);
      assert.equal((await s.broker.inspectQueue(dlq))?.messages, 2, "listing removes nothing");

      const json = await runDeno(["task", "dlq", "--queue", queue, "--json"], { AMQP_URL });
      const document = JSON.parse(json.stdout);
      assert.equal(document.queues[0].total, 2);
      assert.deepEqual(
        document.queues[0].letters.map((l: { taskId: string }) => l.taskId),
        ["dead-1", "dead-2"],
      );

      const startsBefore = s.progress.filter((p) => p.event === "started").length;
      const replayed = await runDeno(
        ["task", "dlq", "--queue", queue, "--reason", "exhausted", "--replay"],
        { AMQP_URL },
      );
      assert.equal(replayed.code, 0, replayed.stderr);
      assert.match(replayed.stdout, new RegExp(`${dlq}: replayed 1 of 2 to ${queue} \\(1 left`));
      // The replayed request runs again (and, as the demo fails attempt 1, is dead-lettered again).
      await waitFor(
        () => s.progress.filter((p) => p.event === "started").length === startsBefore + 1,
        "the replayed request ran",
      );
      await waitFor(() => s.replies.length === 3, "its reply reached the original caller");
      assert.equal(s.replies[2].task_id, "dead-1");
    } finally {
      assert.equal(await worker.stop(), 0);
      await cleanup(s.broker, queue);
    }
  },
});
