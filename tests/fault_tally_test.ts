/**
 * The fault figures are honest: against the RabbitMQ at `AMQP_URL`, the
 * same tally that reports 0 lost and 0 duplicates for the real worker and
 * dispatcher reports them non-zero for a worker and a client broken on
 * purpose.
 */

import assert from "node:assert/strict";
import type { Broker, Delivery } from "../core/broker/mod.ts";
import { connectAmqp } from "../core/broker/amqp/connect_amqp.ts";
import { encodeReply, type Message, parseRequest } from "../core/contract/mod.ts";
import { TaskClient } from "../client/task_client.ts";
import type { RunDocument } from "../dispatcher/report/mod.ts";
import { countLogged, tallyFaults, tapReplies, withReplyTap } from "./_fault_tally.ts";
import { AMQP_URL, NEEDS_RABBITMQ } from "./_infra.ts";
import { deleteFunctionQueues, uniqueName, waitFor } from "./_helpers.ts";
import { runDeno, startWorkerProcess } from "./_processes.ts";
import { withTempDir } from "./_temp_dir.ts";

const COUNT = 12;

/** task_a, served on `queue` by workers that run as `task_a`. */
const taskA = (queue: string) => new Map([["task_a", { queue, user: "task_a" }]]);

/** Sends `COUNT` tasks of `workMs` through a TaskClient on a tapped connection. */
async function run(queue: string, workMs: number, onStarted?: (taskId: string) => void) {
  const { broker, wire } = tapReplies(await connectAmqp(AMQP_URL));
  const client = await TaskClient.open(broker, { functions: taskA(queue) });
  const ids = Array.from({ length: COUNT }, (_, i) => `${queue}-${i}`);
  const done = Promise.all(ids.map((taskId) =>
    client.request("task_a", { work_ms: workMs }, {
      taskId,
      timeoutMs: 15_000,
      onProgress: (p) => p.event === "started" && onStarted?.(taskId),
    })
  ));
  return { broker, client, wire, ids, done };
}

async function cleanup(broker: Broker, queue: string) {
  await deleteFunctionQueues(broker, queue);
  await broker.close();
}

/** The reply a hand-made worker gives to `delivery`: a success. */
function replyTo(delivery: Delivery, queue: string): Message {
  const request = parseRequest(delivery, { task: "task_a" });
  assert.ok(request.ok);
  const now = new Date().toISOString();
  return encodeReply({
    task_id: delivery.properties.messageId ?? null,
    task: "task_a",
    status: "success",
    result: "done",
    error: null,
    worker: "hand-made",
    queue,
    attempts: 1,
    started_at: now,
    finished_at: now,
    duration_ms: 0,
  }, delivery.properties.correlationId);
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
      finished: countLogged(lines, "Task succeeded"),
    });
    console.log(`honest worker, SIGKILL: ${JSON.stringify(figures)}`);
    assert.equal(figures.lost, 0);
    assert.equal(figures.completed, COUNT);
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
      answering.push(consumer.publish(delivery.properties.replyTo!, replyTo(delivery, broken)));
    }, { prefetch: COUNT });
    const b = await run(broken, 0);
    const settled = b.done.then(() => "answered", () => "some never answered");
    await waitFor(() => received === COUNT, "every request received");
    // Its replies are confirmed before it closes: a close cuts off those in flight.
    await Promise.all(answering);
    await consumer.close();
    await waitFor(() => b.wire.replies.size === COUNT - 4, "the replies it sent, on the wire");
    // Nothing can answer the other four any more: the broker holds none of
    // them, and no one consumes the queue.
    const left = await b.broker.inspectQueue(broken);
    assert.deepEqual([left?.messages, left?.consumers], [0, 0], "they are gone");
    const brokenFigures = tallyFaults({ sent: b.ids, wire: b.wire, finished: new Map() });
    console.log(`broken worker (ack first): ${JSON.stringify(brokenFigures)}`);
    assert.equal(brokenFigures.lost, 4, "the tally sees the tasks the broken worker lost");
    await b.client.close();
    assert.equal(await settled, "some never answered");
    await cleanup(b.broker, broken);
  },
});

Deno.test({
  name:
    "fault tally: every task answered twice on the wire is one outcome in the dispatcher's log and document; a client that does not de-duplicate hands it over twice",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const queue = uniqueName("tally_dupes");
    // A worker that answers every request twice, as a redelivered task is
    // answered by two replicas; both replies confirmed before the ack.
    const worker = await connectAmqp(AMQP_URL, { connectionName: "answers-twice" });
    const onWire = new Map<string, number>();
    await worker.declareQueue(queue, { durable: true });
    await worker.consume(queue, async (delivery) => {
      const reply = replyTo(delivery, queue);
      for (let i = 0; i < 2; i++) await worker.publish(delivery.properties.replyTo!, reply);
      const id = delivery.properties.messageId!;
      onWire.set(id, (onWire.get(id) ?? 0) + 1);
      worker.ack(delivery);
    }, { prefetch: 4 });
    try {
      await withTempDir(async (dir) => {
        const config = `${dir}/twice.yml`;
        await Deno.writeTextFile(
          config,
          `functions:
  task_a: { queue: ${queue} }
scenarios:
  twice:
    tasks:
      - { task: task_a, count: 3 }
`,
        );
        const dispatch = await runDeno([
          "task",
          "-q",
          "dispatch",
          "--config",
          config,
          "--scenario",
          "twice",
          "--broker",
          AMQP_URL,
          "--json",
          "--no-save",
          "--log-level",
          "info",
          "--log-format",
          "json",
        ]);
        assert.equal(dispatch.code, 0, dispatch.stdout + dispatch.stderr);
        const document: RunDocument = JSON.parse(dispatch.stdout);
        const logged = (msg: string) =>
          dispatch.stderr.split("\n").filter((line) => line.startsWith("{"))
            .map((line) => JSON.parse(line)).filter((entry) => entry.msg === msg)
            .map((entry) => entry.task_id as string);
        const sent = logged("Task sent");
        const wire = { replies: new Map<string, number>(), succeeded: new Set(sent) };
        for (const id of sent) wire.replies.set(id, 2 * (onWire.get(id) ?? 0));
        const finishedLines = logged("Task finished");
        const inLog = tallyFaults({ sent, wire, handed: finishedLines, finished: new Map() });
        const inDocument = tallyFaults({
          sent,
          wire,
          handed: document.tasks.map((task) => task.task_id!),
          finished: new Map(),
        });
        console.log(
          `dispatcher: log ${JSON.stringify(inLog)}, document ${JSON.stringify(inDocument)}`,
        );
        assert.equal(sent.length, 3);
        assert.equal(inLog.duplicates_on_wire, 3, "each task was answered twice on the wire");
        assert.equal(inLog.duplicates_to_caller, 0, "one Task finished line per task");
        assert.equal(inDocument.duplicates_to_caller, 0, "one entry per task in the document");
        assert.equal(finishedLines.length, 3);
      });

      // The naive client: every reply on the wire is an outcome for the caller.
      const { broker, wire } = tapReplies(await connectAmqp(AMQP_URL));
      const naive: string[] = [];
      const naiveTap = withReplyTap(broker, (message) => {
        if (message.properties.type === "task.result") {
          naive.push(message.properties.correlationId!);
        }
      });
      const client = await TaskClient.open(naiveTap, { functions: taskA(queue) });
      try {
        const outcome = await client.request("task_a", {}, {
          taskId: "twice",
          timeoutMs: 10_000,
        });
        assert.equal(outcome.kind, "reply");
        await waitFor(() => (wire.replies.get("twice") ?? 0) === 2, "the second reply on the wire");
        const careless = tallyFaults({ sent: ["twice"], wire, handed: naive, finished: new Map() });
        console.log(`naive client: ${JSON.stringify(careless)}`);
        assert.equal(careless.duplicates_on_wire, 1);
        assert.equal(
          careless.duplicates_to_caller,
          1,
          "the tally catches a client that hands it over twice",
        );
      } finally {
        await client.close();
        await broker.close();
      }
    } finally {
      await cleanup(worker, queue);
    }
  },
});
