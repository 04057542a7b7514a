/**
 * The fault figures are honest: against the RabbitMQ at `AMQP_URL`, the
 * same tally that reports 0 lost and 0 duplicates for the real worker and
 * client reports them non-zero for a worker and a client broken on purpose.
 */

import assert from "node:assert/strict";
import type { Broker } from "../core/broker/mod.ts";
import { connectAmqp } from "../core/broker/amqp/connect_amqp.ts";
import { encodeReply, encodeRequest, type Message, parseRequest } from "../core/contract/mod.ts";
import { TaskClient } from "../client/task_client.ts";
import { countLogged, tallyFaults, tapReplies, withReplyTap } from "./_fault_tally.ts";
import { AMQP_URL, NEEDS_RABBITMQ } from "./_infra.ts";
import { deleteFunctionQueues, uniqueName, waitFor } from "./_helpers.ts";
import { startWorkerProcess } from "./_processes.ts";

const COUNT = 12;

/** task_a, served on `queue` by workers that run as `task_a`. */
const taskA = (queue: string) => new Map([["task_a", { queue, user: "task_a" }]]);

/** Sends `COUNT` tasks of `workMs` through a TaskClient on a tapped connection. */
async function run(queue: string, workMs: number, onStarted?: (taskId: string) => void) {
  const { broker, wire } = tapReplies(await connectAmqp(AMQP_URL));
  const client = await TaskClient.open(broker, { functions: taskA(queue) });
  const ids = Array.from({ length: COUNT }, (_, i) => `${queue}-${i}`);
  const handed: string[] = [];
  const done = Promise.all(ids.map((taskId) =>
    client.request("task_a", { work_ms: workMs }, {
      taskId,
      timeoutMs: 15_000,
      onProgress: (p) => p.event === "started" && onStarted?.(taskId),
    }).then((outcome) => {
      if (outcome.kind === "reply") handed.push(outcome.taskId);
    })
  ));
  return { broker, client, wire, ids, handed, done };
}

async function cleanup(broker: Broker, queue: string) {
  await deleteFunctionQueues(broker, queue);
  await broker.close();
}

Deno.test({
  name:
    "fault tally: a worker SIGKILLed mid-run loses nothing; a worker that acknowledges first loses tasks",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    // The real worker, killed once it has started a few tasks, then replaced.
    const honest = uniqueName("tally_honest");
    const env = { AMQP_URL, QUEUE: honest, CONCURRENCY: "4", LOG_LEVEL: "info" };
    let worker = await startWorkerProcess("task_a", env);
    const lines: string[] = [];
    let started = 0;
    const r = await run(honest, 300, () => started++);
    await waitFor(() => started >= 4, "tasks in flight");
    await worker.stop("SIGKILL");
    lines.push(...worker.lines);
    worker = await startWorkerProcess("task_a", env);
    await r.done;
    r.client.close();
    await worker.stop();
    lines.push(...worker.lines);
    const figures = tallyFaults({
      sent: r.ids,
      wire: r.wire,
      handed: r.handed,
      finished: countLogged(lines, "Task succeeded"),
    });
    console.log(`honest worker, SIGKILL: ${JSON.stringify(figures)}`);
    assert.equal(figures.lost, 0);
    assert.equal(figures.completed, COUNT);
    assert.equal(figures.duplicates_to_caller, 0);
    assert.ok(figures.finished_by_workers >= COUNT, "every task finished on a worker");
    await cleanup(r.broker, honest);

    // Broken on purpose: acknowledges each request on receipt (as Celery does
    // without acks_late), then dies before answering four of them.
    const broken = uniqueName("tally_broken");
    const consumer = await connectAmqp(AMQP_URL);
    await consumer.declareQueue(broken, { durable: true });
    let received = 0;
    const answering: Promise<void>[] = [];
    await consumer.consume(broken, (delivery) => {
      consumer.ack(delivery);
      if (++received > COUNT - 4) return; // "crashed" with these in hand
      const request = parseRequest(delivery, { task: "task_a" });
      assert.ok(request.ok);
      const reply: Message = encodeReply({
        task_id: delivery.properties.messageId ?? null,
        task: "task_a",
        status: "success",
        result: "done",
        error: null,
        worker: "broken",
        queue: broken,
        attempts: 1,
        started_at: new Date().toISOString(),
        finished_at: new Date().toISOString(),
        duration_ms: 0,
      }, delivery.properties.correlationId);
      answering.push(consumer.publish(delivery.properties.replyTo!, reply));
    }, { prefetch: COUNT });
    const b = await run(broken, 0);
    await waitFor(() => received === COUNT, "every request received");
    // Its replies are confirmed before it closes: a close cuts off those in flight.
    await Promise.all(answering);
    await consumer.close();
    const lost = await Promise.race([
      b.done.then(() => "answered"),
      new Promise((resolve) => setTimeout(() => resolve("some never answered"), 2000)),
    ]);
    b.client.close();
    const brokenFigures = tallyFaults({
      sent: b.ids,
      wire: b.wire,
      handed: b.handed,
      finished: new Map(),
    });
    console.log(`broken worker (ack first): ${JSON.stringify(brokenFigures)}`);
    assert.equal(lost, "some never answered");
    assert.equal(brokenFigures.lost, 4, "the tally sees the tasks the broken worker lost");
    assert.equal(
      (await b.broker.inspectQueue(broken))?.messages,
      0,
      "and the broker holds none of them any more: they are gone",
    );
    await cleanup(b.broker, broken);
  },
});

Deno.test({
  name:
    "fault tally: a reply seen twice on the wire reaches the caller once; a client that does not de-duplicate hands it over twice",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const queue = uniqueName("tally_dupes");
    const worker = await startWorkerProcess("task_a", { AMQP_URL, QUEUE: queue });
    const { broker, wire } = tapReplies(await connectAmqp(AMQP_URL));
    const naive: string[] = [];
    // The naive client: every reply on the wire is an outcome for the caller.
    const naiveTap = withReplyTap(broker, (message) => {
      if (message.properties.type === "task.result") naive.push(message.properties.correlationId!);
    });
    const client = await TaskClient.open(naiveTap, { functions: taskA(queue) });
    const handed: string[] = [];
    try {
      // A request published twice (a redelivery, in effect) is answered twice.
      const replyTo = "amq.rabbitmq.reply-to";
      const outcome = client.request("task_a", { work_ms: 0 }, {
        taskId: "twice",
        timeoutMs: 10_000,
      }).then((o) => o.kind === "reply" && handed.push(o.taskId));
      await outcome;
      const again = encodeRequest("task_a", { work_ms: 0 }, { taskId: "twice", replyTo });
      await broker.publish(queue, again);
      await waitFor(() => (wire.replies.get("twice") ?? 0) === 2, "the second reply on the wire");
      const honest = tallyFaults({ sent: ["twice"], wire, handed, finished: new Map() });
      const careless = tallyFaults({ sent: ["twice"], wire, handed: naive, finished: new Map() });
      console.log(
        `TaskClient: ${JSON.stringify(honest)}; naive client: ${JSON.stringify(careless)}`,
      );
      assert.equal(honest.duplicates_on_wire, 1);
      assert.equal(honest.duplicates_to_caller, 0);
      assert.equal(
        careless.duplicates_to_caller,
        1,
        "the tally catches a client that hands it over twice",
      );
    } finally {
      client.close();
      await worker.stop();
      await cleanup(broker, queue);
    }
  },
});
