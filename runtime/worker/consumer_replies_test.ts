/**
 * Where a worker sends what it answers, in process on the in-memory broker:
 * only to places made for answers, and a reply the broker refuses is the
 * caller's loss, never a reason to run the task again.
 */

import assert from "node:assert/strict";
import type { Broker, Delivery } from "../../core/broker/broker.ts";
import { MemoryBroker } from "../../core/broker/mod.ts";
import {
  deadLetterQueueOf,
  encodeCeleryRequest,
  encodeRequest,
  type Message,
  parseCeleryReply,
  parseReply,
  replyQueueName,
  retryQueueOf,
} from "../../core/contract/mod.ts";
import { defineFunction } from "../define_function.ts";
import { createLogger } from "../../core/log.ts";
import type { HandlerOutcome } from "../attempt.ts";
import { type HandlerRunner, inProcessRunner } from "../handler_runner.ts";
import { startWorker } from "./consumer.ts";
import { waitFor } from "../../tests/_helpers.ts";

let runs: string[] = [];
const probe = defineFunction({
  name: "probe",
  queue: "queue_probe",
  celeryNames: ["tasks.probe"],
  handler(payload) {
    runs.push(String(payload.id));
    return `ran ${payload.id}`;
  },
});

const UUID = () => crypto.randomUUID();

async function setup(runner: HandlerRunner = inProcessRunner(probe)) {
  runs = [];
  const hub = new MemoryBroker();
  const workerBroker = hub.connect("probe");
  const client = hub.connect("dispatcher");
  const lines: Record<string, unknown>[] = [];
  const worker = await startWorker(runner, workerBroker, {
    workerId: "probe@test",
    returnDelayMs: 5,
    log: createLogger({ write: (line) => lines.push(JSON.parse(line)) }),
  });
  const depth = async (queue: string) => (await client.inspectQueue(queue))?.messages ?? -1;
  return {
    hub,
    client,
    worker,
    workerBroker,
    lines,
    depth,
    native(id: string, replyTo: string | undefined) {
      return client.publish(
        probe.queue,
        encodeRequest("probe", { id }, { taskId: id, replyTo }),
      );
    },
    celery(id: string, replyTo: string) {
      // Through the route Celery clients take: the exchange named after the queue.
      return client.publishToExchange(
        probe.queue,
        encodeCeleryRequest("tasks.probe", { id }, { taskId: id, replyTo }),
        probe.queue,
      );
    },
    async letters(count: number): Promise<Delivery[]> {
      const dlq = deadLetterQueueOf(probe.queue);
      await waitFor(async () => (await depth(dlq)) >= count, `${count} dead letters`);
      const letters = [];
      for (let i = 0; i < count; i++) letters.push((await client.get(dlq))!);
      return letters;
    },
  };
}

Deno.test("startWorker() runs nothing for a reply_to that is no reply destination, native or Celery, and dead-letters it as invalid_reply_to", async () => {
  const t = await setup();
  const victims = ["queue_victim", probe.queue, retryQueueOf(probe.queue, 1_000)];
  const native = [
    ...victims,
    deadLetterQueueOf(probe.queue),
    "queue_probe.control.deadbeef",
    "anything",
    UUID(), // a Celery client's queue takes Celery results only
  ];
  const celery = [...victims, replyQueueName()];
  try {
    await t.client.declareQueue("queue_victim");
    for (const [i, replyTo] of native.entries()) await t.native(`n${i}`, replyTo);
    for (const [i, replyTo] of celery.entries()) await t.celery(`c${i}`, replyTo);
    const letters = await t.letters(native.length + celery.length);
    assert.deepEqual(runs, [], "no handler ran");
    for (const letter of letters) {
      const headers = letter.properties.headers!;
      assert.equal(headers["x-dlq-reason"], "invalid_reply_to");
      assert.equal(headers["x-dlq-error-type"], "InvalidReplyTo");
      assert.match(String(headers["x-dlq-error-message"]), /is not a reply destination/);
    }
    // Nothing the worker published landed anywhere but its dead letters.
    for (const queue of ["queue_victim", probe.queue]) assert.equal(await t.depth(queue), 0);
    assert.equal(t.worker.stats.invalidReplyTo, native.length + celery.length);
    assert.equal(t.worker.stats.received, native.length + celery.length);
  } finally {
    await t.worker.stop(0);
    await t.hub.shutdown();
  }
});

Deno.test("startWorker() answers a reply destination of each kind: Direct Reply-to, replies.<32 hex>, a Celery client's UUID queue", async () => {
  const t = await setup();
  const replies = replyQueueName();
  const celeryQueue = UUID();
  try {
    const direct: Message[] = [];
    const directTo = await t.client.openReplyQueue((message) => direct.push(message));
    await t.client.declareQueue(replies);
    await t.client.declareQueue(celeryQueue);
    await t.native("direct", directTo);
    await t.native("queue", replies);
    await t.celery("celery", celeryQueue);
    await t.celery("celery-direct", directTo);
    await waitFor(() => direct.length === 2, "the Direct Reply-to answers");
    await waitFor(async () => (await t.depth(replies)) === 1, "the reply queue's answer");
    await waitFor(async () => (await t.depth(celeryQueue)) === 1, "the Celery result");
    const result = parseCeleryReply((await t.client.get(celeryQueue))!.body);
    assert.ok(result.ok && result.value.status === "SUCCESS", JSON.stringify(result));
    assert.deepEqual(runs.sort(), ["celery", "celery-direct", "direct", "queue"]);
  } finally {
    await t.worker.stop(0);
    await t.hub.shutdown();
  }
});

Deno.test("startWorker() settles a request whose reply the broker refuses: counted, logged, never run again", async () => {
  const t = await setup();
  // A caller's queues that refuse every message, as x-max-length 0 with reject-publish does.
  const sink = replyQueueName();
  const celerySink = UUID();
  try {
    await t.client.declareQueue(sink, { maxLength: 0 });
    await t.client.declareQueue(celerySink, { maxLength: 0, durable: false });
    await t.native("native", sink);
    await t.celery("celery", celerySink);
    await waitFor(() => t.worker.stats.repliesRefused === 2, "both replies refused");
    await waitFor(() => t.worker.stats.inFlight === 0, "both settled");
    // Whatever is unsettled goes back to the queue when the connection ends.
    await t.worker.stop(0);
    await t.workerBroker.close();
    assert.equal(await t.depth(probe.queue), 0, "acknowledged, not returned");
    assert.deepEqual(runs.sort(), ["celery", "native"], "each ran exactly once");
    assert.equal(t.worker.stats.succeeded, 2);
    assert.equal(t.worker.stats.settlesRefused, 0);
    const refused = t.lines.filter((l) =>
      l.msg === "The broker refused the reply; the caller will not get it"
    );
    assert.deepEqual(refused.map((l) => l.task_id).sort(), ["celery", "native"]);
  } finally {
    await t.hub.shutdown();
  }
});

/** A runner whose every attempt ends with `outcome`, however the function would answer. */
function fixedRunner(outcome: HandlerOutcome): HandlerRunner {
  const inner = inProcessRunner(probe);
  return {
    info: inner.info,
    run: () => {
      runs.push("forged");
      return Promise.resolve(outcome);
    },
    abortAll: () => {},
    close: () => Promise.resolve(),
  };
}

Deno.test("startWorker() refuses a result that is not one JSON value: the reply's fields stay the runtime's", async () => {
  const forged =
    '"x","status":"success","worker":"forged@elsewhere","attempts":99,"error":null,"task_id":"other"';
  const t = await setup(fixedRunner({ ok: true, resultJson: forged }));
  try {
    const replies: Message[] = [];
    const replyTo = await t.client.openReplyQueue((message) => replies.push(message));
    await t.native("t1", replyTo);
    await waitFor(() => replies.length === 1, "the reply");
    const reply = parseReply(replies[0].body);
    assert.ok(reply.ok, JSON.stringify(reply));
    assert.equal(reply.value.status, "error");
    assert.equal(reply.value.error?.type, "InvalidResult");
    assert.equal(reply.value.worker, "probe@test");
    assert.equal(reply.value.attempts, 1);
    assert.equal(reply.value.task_id, "t1");
    const [letter] = await t.letters(1);
    assert.equal(letter.properties.headers?.["x-dlq-reason"], "non_retryable");
  } finally {
    await t.worker.stop(0);
    await t.hub.shutdown();
  }
});

/** `broker` with `publish` replaced. */
function withPublish(
  broker: Broker,
  publish: (queue: string, message: Message) => Promise<void>,
): Broker {
  return new Proxy(broker, {
    get(target, key, receiver) {
      if (key === "publish") return publish;
      const value = Reflect.get(target, key, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

Deno.test("startWorker() still returns a task whose reply failed for another reason than a refusal", async () => {
  runs = [];
  const hub = new MemoryBroker();
  const inner = hub.connect("probe");
  let failures = 1;
  const flaky = withPublish(inner, (queue, message) => {
    if (message.properties.type === "task.result" && failures-- > 0) {
      return Promise.reject(new Error("the connection is going"));
    }
    return inner.publish(queue, message);
  });
  const worker = await startWorker(inProcessRunner(probe), flaky, {
    workerId: "probe@flaky",
    returnDelayMs: 5,
  });
  const client = hub.connect("dispatcher");
  const replies: Message[] = [];
  const replyTo = await client.openReplyQueue((message) => replies.push(message));
  try {
    await client.publish(
      probe.queue,
      encodeRequest("probe", { id: "x" }, { taskId: "x", replyTo }),
    );
    await waitFor(() => replies.length === 1, "answered in the end");
    // Answered from the record of answers: the handler ran once.
    assert.deepEqual(runs, ["x"]);
    assert.equal(worker.stats.settlesRefused, 1);
    assert.equal(worker.stats.answeredAgain, 1);
  } finally {
    await worker.stop(0);
    await hub.shutdown();
  }
});
