/**
 * Events in the consume pipeline, in process on the in-memory broker: the
 * record of answers by event id, who may publish an event straight to a
 * queue, retries of an event, run reports, chaining, and the refusal of an
 * event no trigger matches.
 */

import assert from "node:assert/strict";
import { MemoryBroker } from "../../core/broker/mod.ts";
import {
  CLOUD_EVENTS_EXCHANGE,
  type CloudEvent,
  deadLetterQueueOf,
  encodeCloudEvent,
  type EventAttributes,
  parseDeadLetter,
  parseReply,
  replyQueueName,
} from "../../core/contract/mod.ts";
import { emitEvent } from "../../client/emit.ts";
import { createLogger } from "../../core/log.ts";
import { defineFunction } from "../define_function.ts";
import { inProcessRunner } from "../handler_runner.ts";
import { startWorker } from "./consumer.ts";
import { waitFor } from "../../tests/_helpers.ts";

function subscriber(name: string, options: { failFirst?: number } = {}) {
  const runs: { event?: EventAttributes; attempt: number; payload: unknown }[] = [];
  const definition = defineFunction({
    name,
    queue: name,
    retry: { maxRetries: 2, baseDelayMs: 1, maxDelayMs: 5 },
    handler(payload, context) {
      runs.push({ event: context.event, attempt: context.attempt, payload });
      if (runs.length <= (options.failFirst ?? 0)) throw new Error("not yet");
      return { seen: payload };
    },
  });
  return { runs, runner: inProcessRunner(definition) };
}

const EVENT: CloudEvent = {
  specversion: "1.0",
  id: "e-1",
  source: "/test",
  type: "order.created",
  hops: 0,
  data: { order: 1 },
};

Deno.test("startWorker() runs an event once per source and id, however often it arrives", async () => {
  const hub = new MemoryBroker();
  const { runs, runner } = subscriber("on_order");
  const worker = await startWorker(runner, hub.connect("on_order"), {
    workerId: "w",
    triggers: ["order.*"],
  });
  const emitter = hub.connect("dispatcher");
  try {
    await emitEvent(emitter, "order.created", { order: 1 }, { id: "same" });
    await waitFor(() => runs.length === 1, "the first copy runs");
    await emitEvent(emitter, "order.created", { order: 1 }, { id: "same", mode: "binary" });
    await emitEvent(emitter, "order.created", { order: 2 }, { id: "other" });
    await waitFor(() => runs.length === 2, "the other event runs");
    await waitFor(() => worker.stats.answeredAgain === 1, "the copy is settled from the record");
    assert.deepEqual(runs.map((run) => run.event?.id), ["same", "other"]);
    assert.deepEqual(runs[0].payload, { order: 1 });
  } finally {
    await worker.stop(100);
    await hub.shutdown();
  }
});

Deno.test("startWorker() runs an event published straight to its queue only from a sender it accepts", async () => {
  const hub = new MemoryBroker();
  const { runs, runner } = subscriber("on_order");
  const worker = await startWorker(runner, hub.connect("on_order"), {
    workerId: "w",
    triggers: ["order.*"],
  });
  try {
    // Not through the events exchange, so no topic permission vouches for it.
    await hub.connect("task_b").publish("on_order", encodeCloudEvent(EVENT));
    const dlq = deadLetterQueueOf("on_order");
    const reader = hub.connect("admin");
    await waitFor(async () => ((await reader.inspectQueue(dlq))?.messages ?? 0) === 1, "refused");
    const letter = await reader.get(dlq);
    assert.equal(parseDeadLetter(letter!, dlq).reason, "unauthenticated");
    await hub.connect("dispatcher").publish("on_order", encodeCloudEvent({ ...EVENT, id: "e-2" }));
    await waitFor(() => runs.length === 1, "an accepted sender's event runs");
    assert.equal(runs[0].event?.id, "e-2");
  } finally {
    await worker.stop(100);
    await hub.shutdown();
  }
});

Deno.test("startWorker() retries a failed event as a call, with its attributes, and reports each run", async () => {
  const hub = new MemoryBroker();
  const { runs, runner } = subscriber("flaky", { failFirst: 1 });
  const worker = await startWorker(runner, hub.connect("flaky"), {
    workerId: "w",
    triggers: ["order.#"],
  });
  const emitter = hub.connect("dispatcher");
  const replies = replyQueueName();
  await emitter.declareQueue(replies, { exclusive: true });
  try {
    const id = await emitEvent(emitter, "order.created", { order: 3 }, { replyTo: replies });
    await waitFor(() => runs.length === 2, "the retry runs");
    assert.deepEqual(runs.map((run) => [run.attempt, run.event?.id]), [[1, id], [2, id]]);
    let report;
    await waitFor(async () => (report = await emitter.get(replies)) !== null, "a run report");
    const reply = parseReply(report!.body);
    assert.ok(reply.ok);
    assert.equal(report!.properties.correlationId, id);
    assert.deepEqual(
      [reply.value.task, reply.value.task_id, reply.value.status, reply.value.attempts],
      ["flaky", id, "success", 2],
    );
  } finally {
    await worker.stop(100);
    await hub.shutdown();
  }
});

Deno.test("startWorker() emits each result of a function with emits, of a derived id and one hop on", async () => {
  const hub = new MemoryBroker();
  const first = subscriber("first");
  const second = subscriber("second");
  const workers = [
    await startWorker(first.runner, hub.connect("first"), {
      workerId: "w1",
      triggers: ["a.start"],
      emits: "a.next",
    }),
    await startWorker(second.runner, hub.connect("second"), {
      workerId: "w2",
      triggers: ["a.next"],
    }),
  ];
  try {
    const emitter = hub.connect("dispatcher");
    await emitter.declareExchange(CLOUD_EVENTS_EXCHANGE, "topic");
    const id = await emitEvent(emitter, "a.start", { n: 1 }, { subject: "s-1" });
    await waitFor(() => second.runs.length === 1, "the chain's second step runs");
    const event = second.runs[0].event!;
    assert.equal(event.source, "/functions/first");
    assert.equal(event.hops, 1);
    assert.equal(event.subject, "s-1", "the subject goes on");
    assert.notEqual(event.id, id);
    assert.deepEqual(second.runs[0].payload, { seen: { n: 1 } });
  } finally {
    for (const worker of workers) await worker.stop(100);
    await hub.shutdown();
  }
});

Deno.test("startWorker() refuses an event no trigger matches, through a binding left on its queue, unrun", async () => {
  const hub = new MemoryBroker();
  const { runs, runner } = subscriber("on_order");
  const lines: Record<string, unknown>[] = [];
  const worker = await startWorker(runner, hub.connect("on_order"), {
    workerId: "w",
    triggers: ["order.created"],
    log: createLogger({ write: (line) => lines.push(JSON.parse(line)) }),
  });
  const emitter = hub.connect("dispatcher");
  const replies = replyQueueName();
  await emitter.declareQueue(replies, { exclusive: true });
  try {
    // What a removed trigger leaves behind: a binding the worker no longer makes.
    await hub.connect("admin").bindQueue("on_order", CLOUD_EVENTS_EXCHANGE, "order.*");
    const refused = await emitEvent(emitter, "order.updated", { order: 1 }, { replyTo: replies });
    const ran = await emitEvent(emitter, "order.created", { order: 2 });
    await waitFor(() => runs.length === 1, "the triggered event runs");
    const dlq = deadLetterQueueOf("on_order");
    const reader = hub.connect("admin");
    await waitFor(async () => ((await reader.inspectQueue(dlq))?.messages ?? 0) === 1, "refused");
    assert.deepEqual(runs.map((run) => run.event?.id), [ran]);
    assert.equal(worker.stats.untriggered, 1);
    assert.equal(worker.stats.rejected, 0);
    const letter = parseDeadLetter((await reader.get(dlq))!, dlq);
    assert.equal(letter.reason, "untriggered");
    assert.equal(letter.errorType, "Untriggered");
    assert.equal(letter.taskId, refused);
    assert.match(
      letter.errorMessage,
      /^Cannot run event type 'order\.updated' as function 'on_order' has no trigger that matches it \(its triggers: order\.created\)/,
    );
    let report;
    await waitFor(async () => (report = await emitter.get(replies)) !== null, "a run report");
    const reply = parseReply(report!.body);
    assert.ok(reply.ok);
    assert.deepEqual(
      [reply.value.task, reply.value.task_id, reply.value.status, reply.value.error?.type],
      ["on_order", refused, "error", "Untriggered"],
    );
    const line = lines.find((l) => l.reason === "untriggered");
    assert.ok(line, JSON.stringify(lines));
    assert.equal(line.msg, "Refused an event that no trigger of the function matches");
    assert.equal(line.level, "warn");
    assert.equal(line.task_id, refused);
    assert.equal(line.function, "on_order");
  } finally {
    await worker.stop(100);
    await hub.shutdown();
  }
});
