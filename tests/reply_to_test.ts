/**
 * `reply_to` is not a write-anywhere key (review F2), against the RabbitMQ at
 * `AMQP_URL` with real worker processes: a worker publishes its answers only
 * to places made for them, and an answer the broker refuses is the caller's
 * loss, never a reason to run the task again, on quorum and classic queues,
 * for native and Celery requests alike.
 */

import assert from "node:assert/strict";
import type { Broker } from "../core/broker/mod.ts";
import { connectAmqp } from "../core/broker/amqp/connect_amqp.ts";
import {
  deadLetterQueueOf,
  encodeCeleryRequest,
  encodeRequest,
  type Message,
  parseReply,
  replyQueueName,
  retryQueueOf,
} from "../core/contract/mod.ts";
import { AMQP_URL, NEEDS_RABBITMQ } from "./_infra.ts";
import { deleteFunctionQueues, freePort, uniqueName, waitFor } from "./_helpers.ts";
import { startWorkerProcess } from "./_processes.ts";

async function metric(port: number, pattern: RegExp): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const match = text.match(pattern);
  return match ? Number(match[1]) : NaN;
}

/** A caller of the function of `queue`, in its own protocol or Celery's. */
function requests(broker: Broker, queue: string) {
  return {
    native(id: string, replyTo: string) {
      return broker.publish(
        queue,
        encodeRequest("task_a", { work_ms: 0 }, { taskId: id, replyTo }),
      );
    },
    celery(id: string, replyTo: string) {
      // Through the route Celery clients take: the exchange named after the queue.
      return broker.publishToExchange(
        queue,
        encodeCeleryRequest("tasks.task_a", { work_ms: 0 }, { taskId: id, replyTo }),
        queue,
      );
    },
  };
}

const ran = (lines: string[], id: string) =>
  lines.filter((l) => l.includes('"msg":"Task succeeded"') && l.includes(`"task_id":"${id}"`))
    .length;

Deno.test({
  name:
    "a request whose reply_to names a queue runs no code and is dead-lettered as invalid_reply_to, native and Celery",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const queue = uniqueName("replyto_refused");
    const victim = uniqueName("replyto_victim");
    const port = freePort();
    const worker = await startWorkerProcess("task_a", {
      AMQP_URL,
      QUEUE: queue,
      METRICS_PORT: String(port),
    });
    const broker = await connectAmqp(AMQP_URL, { connectionName: "reply-to-test" });
    try {
      await broker.declareQueue(victim);
      const send = requests(broker, queue);
      const targets = [
        victim, // another function's queue
        queue, // the worker's own, where its user's messages pass as its retries
        deadLetterQueueOf(queue),
        retryQueueOf(queue, 1_000),
        `${queue}.control.deadbeef`,
      ];
      for (const [i, target] of targets.entries()) {
        await send.native(`native-${i}`, target);
        await send.celery(`celery-${i}`, target);
      }
      const count = targets.length * 2;
      const dlq = deadLetterQueueOf(queue);
      await waitFor(async () => (await broker.inspectQueue(dlq))?.messages === count, "letters");
      for (let i = 0; i < count; i++) {
        const letter = (await broker.get(dlq))!;
        broker.ack(letter);
        assert.equal(letter.properties.headers?.["x-dlq-reason"], "invalid_reply_to");
        assert.equal(letter.properties.headers?.["x-dlq-error-type"], "InvalidReplyTo");
      }
      assert.equal(
        await metric(port, /worker_tasks_total\{[^}]*status="invalid_reply_to"\} (\d+)/),
        count,
      );
      // The worker published nowhere but its dead letters.
      for (const name of [victim, queue, dlq, retryQueueOf(queue, 1_000)]) {
        assert.equal((await broker.inspectQueue(name))?.messages, 0, name);
      }
      assert.ok(!worker.lines.some((l) => l.includes('"msg":"Task succeeded"')), "nothing ran");
    } finally {
      assert.equal(await worker.stop(), 0, worker.lines.join("\n"));
      await broker.deleteQueue(victim).catch(() => {});
      await deleteFunctionQueues(broker, queue);
      await broker.close();
    }
  },
});

for (const queueType of ["quorum", "classic"] as const) {
  Deno.test({
    name:
      `a reply the broker refuses is the caller's loss: the task ran once and was settled (QUEUE_TYPE=${queueType}, native and Celery)`,
    ignore: NEEDS_RABBITMQ,
    async fn() {
      const queue = uniqueName(`replyto_sink_${queueType}`);
      const port = freePort();
      const worker = await startWorkerProcess("task_a", {
        AMQP_URL,
        QUEUE: queue,
        QUEUE_TYPE: queueType,
        METRICS_PORT: String(port),
      });
      const broker = await connectAmqp(AMQP_URL, { connectionName: "reply-sink-test" });
      // A caller's reply queues that refuse every message (x-max-length 0,
      // x-overflow reject-publish): the broker nacks each reply.
      const sink = replyQueueName();
      const celerySink = crypto.randomUUID();
      let stopped = false;
      try {
        await broker.declareQueue(sink, { maxLength: 0 });
        await broker.declareQueue(celerySink, { maxLength: 0 });
        const send = requests(broker, queue);
        await send.native("native", sink);
        await send.celery("celery", celerySink);
        await waitFor(
          async () => await metric(port, /worker_replies_refused_total\{[^}]*\} (\d+)/) === 2,
          "both replies refused",
        );
        // A request after them, answered: the worker went on.
        const answers: Message[] = [];
        const replyTo = await broker.openReplyQueue((message) => answers.push(message));
        await send.native("after", replyTo);
        await waitFor(() => answers.length === 1, "the next request's reply");
        assert.equal((parseReply(answers[0].body) as { ok: true }).ok, true);
        // Stopping gives back whatever is unsettled: the refused two must not be.
        assert.equal(await worker.stop(), 0, worker.lines.join("\n"));
        stopped = true;
        assert.equal((await broker.inspectQueue(queue))?.messages, 0, "nothing came back");
        assert.equal(ran(worker.lines, "native"), 1);
        assert.equal(ran(worker.lines, "celery"), 1);
        assert.ok(!worker.lines.some((l) => l.includes("Could not settle")), "settled at once");
        assert.equal(
          worker.lines.filter((l) => l.includes("The broker refused the reply")).length,
          2,
        );
      } finally {
        if (!stopped) await worker.stop();
        for (const name of [sink, celerySink]) await broker.deleteQueue(name).catch(() => {});
        await deleteFunctionQueues(broker, queue);
        await broker.close();
      }
    },
  });
}
