/**
 * What counts toward a quorum queue's delivery limit, on each RabbitMQ this
 * machine has: the host's (3.10, at `AMQP_URL`) and the compose image's
 * (`RABBITMQ_IMAGE`, 4.0), started here in a container of its own. RabbitMQ
 * before 4.3 counts every return of a delivery; 4.3 counts a `basic.reject`
 * and a consumer that died, not a `basic.nack`. So the worker hands a
 * healthy task back as a confirmed copy (counted by no version) and returns
 * a task whose outcome it could not publish with `basic.reject` (counted by
 * every version), and the broker's own limit catches a worker that dies
 * each time. Real worker processes, real brokers.
 */

import assert from "node:assert/strict";
import amqp from "amqplib";
import type { Broker } from "../core/broker/mod.ts";
import { connectAmqp } from "../core/broker/amqp/connect_amqp.ts";
import {
  deadLetterQueueOf,
  encodeRequest,
  parseReply,
  retryQueueOf,
  type TaskReply,
} from "../core/contract/mod.ts";
import { docker } from "./_docker.ts";
import { AMQP_URL, NEEDS_DOCKER, NEEDS_RABBITMQ } from "./_infra.ts";
import { deleteFunctionQueues, uniqueName, waitFor } from "./_helpers.ts";
import { type RunningProcess, startWorkerProcess } from "./_processes.ts";

/** The version a RabbitMQ at `url` says it is. */
async function versionOf(url: string): Promise<string> {
  const connection = await amqp.connect(url);
  try {
    const properties = (connection as unknown as {
      connection: { serverProperties: { version: string } };
    }).connection.serverProperties;
    return String(properties.version);
  } finally {
    await connection.close();
  }
}

/** A RabbitMQ of the compose stack's image in a container of its own, until `stop()`. */
async function startContainer(): Promise<{ url: string; stop(): Promise<void> }> {
  const image = Deno.env.get("RABBITMQ_IMAGE") ?? "rabbitmq:4-management";
  const id = (await docker(["run", "-d", "--rm", "-p", "127.0.0.1::5672", image])).stdout;
  const stop = () => docker(["rm", "-f", id], {}, true).then(() => {});
  try {
    const port = (await docker(["port", id, "5672/tcp"])).stdout.split("\n")[0].split(":").at(-1);
    const url = `amqp://guest:guest@127.0.0.1:${port}`;
    await waitFor(
      () => versionOf(url).then(() => true, () => false),
      `RabbitMQ from ${image} to accept connections`,
      120_000,
      500,
    );
    return { url, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** A caller on the broker at `url`, with its replies by task id. */
async function caller(url: string, queue: string) {
  const broker = await connectAmqp(url, { connectionName: "delivery-limit-test" });
  const replies = new Map<string, TaskReply>();
  const replyTo = await broker.openReplyQueue((message) => {
    const parsed = parseReply(message.body);
    if (parsed.ok) replies.set(parsed.value.task_id ?? "", parsed.value);
  });
  return {
    broker,
    replies,
    send(taskId: string, payload: Record<string, unknown>, retry?: Record<string, number>) {
      return broker.publish(queue, encodeRequest("task_a", payload, { taskId, replyTo, retry }));
    },
    async close() {
      await deleteFunctionQueues(broker, queue);
      await broker.close();
    },
  };
}

/**
 * A task handed back on SIGTERM, twice, under DELIVERY_LIMIT=1: each
 * delivery that counted would leave the next one dead-lettered as
 * `delivery_limit`, as a `basic.nack` does before RabbitMQ 4.3.
 */
async function handBacksAreNotCounted(url: string): Promise<void> {
  const queue = uniqueName("limit_handback");
  const env = {
    AMQP_URL: url,
    QUEUE: queue,
    DELIVERY_LIMIT: "1",
    CONCURRENCY: "1",
    PREFETCH: "2",
    SHUTDOWN_GRACE_MS: "0",
    LOG_LEVEL: "debug",
  };
  const c = await caller(url, queue);
  const workers: RunningProcess[] = [];
  const started = (worker: RunningProcess, id: string) =>
    waitFor(
      () => worker.lines.some((l) => l.includes('"msg":"Task started"') && l.includes(id)),
      `${id} started`,
      20_000,
    );
  try {
    for (let round = 1; round <= 2; round++) {
      const worker = await startWorkerProcess("task_a", env);
      workers.push(worker);
      if (round === 1) {
        await c.send("long", { work_ms: 60_000 });
        await c.send("waiting", { work_ms: 0 });
      }
      await started(worker, "long");
      assert.equal(await worker.stop(), 0, worker.lines.join("\n"));
      assert.ok(
        worker.lines.some((l) => l.includes("Grace period over")),
        "the running task was handed back",
      );
    }
    // Handed back twice, never counted: the third worker runs it.
    const last = await startWorkerProcess("task_a", env);
    workers.push(last);
    await started(last, "long");
    assert.equal(c.replies.get("waiting")?.status, "success", "the waiting one ran");
    assert.equal(
      (await c.broker.inspectQueue(deadLetterQueueOf(queue)))?.messages,
      0,
      "nothing dead-lettered as delivery_limit",
    );
    assert.ok(!workers.some((w) => w.lines.some((l) => l.includes("delivery_limit"))));
  } finally {
    for (const worker of workers) await worker.stop("SIGKILL").catch(() => {});
    await c.close();
  }
}

/**
 * A task whose retry the broker refuses (its retry queues replaced, after
 * the worker declared them, by queues with other arguments) goes back with
 * `basic.reject` until DELIVERY_LIMIT ends it in the DLQ.
 */
async function refusedSettlesReachTheLimit(url: string): Promise<void> {
  const queue = uniqueName("limit_refused");
  const worker = await startWorkerProcess("task_a", {
    AMQP_URL: url,
    QUEUE: queue,
    DELIVERY_LIMIT: "2",
  });
  const c = await caller(url, queue);
  try {
    for (const ms of [200, 300]) {
      await c.broker.deleteQueue(retryQueueOf(queue, ms));
      await c.broker.declareQueue(retryQueueOf(queue, ms), { type: "classic", durable: true });
    }
    await c.send("stuck", { fail_attempts: 5 }, {
      max_retries: 3,
      base_delay_ms: 300,
      max_delay_ms: 300,
    });
    await waitFor(() => c.replies.has("stuck"), "the task's end", 30_000);
    assert.equal(c.replies.get("stuck")!.error?.type, "DeliveryLimit");
    const dlq = deadLetterQueueOf(queue);
    const letter = (await c.broker.get(dlq))!;
    assert.equal(letter.properties.headers?.["x-dlq-reason"], "delivery_limit");
    assert.equal(letter.properties.headers?.["x-dlq-deliveries"], 2);
    c.broker.ack(letter);
    assert.equal(worker.lines.filter((l) => l.includes("Could not settle a task")).length, 2);
  } finally {
    assert.equal(await worker.stop(), 0, worker.lines.join("\n"));
    await c.close();
  }
}

/**
 * The broker's own limit, with no worker-side check in the way: a consumer
 * that takes the request and dies (its connection closes) every time. The
 * queue as a worker declared it dead-letters it after DELIVERY_LIMIT + 1
 * deliveries, one more than a worker allows.
 */
async function theBrokerLimitCatchesAConsumerThatDies(url: string): Promise<void> {
  const queue = uniqueName("limit_broker");
  const declared = await startWorkerProcess("task_a", {
    AMQP_URL: url,
    QUEUE: queue,
    DELIVERY_LIMIT: "2",
  });
  assert.equal(await declared.stop(), 0);
  const c = await caller(url, queue);
  const dlq = deadLetterQueueOf(queue);
  let deliveries = 0;
  try {
    await c.send("poison", {});
    while (((await c.broker.inspectQueue(dlq))?.messages ?? 0) === 0) {
      assert.ok(deliveries <= 5, `${deliveries} deliveries, and still not dead-lettered`);
      const dying: Broker = await connectAmqp(url, { connectionName: "dies-each-time" });
      let got = false;
      await dying.consume(queue, () => got = true, { prefetch: 1 });
      await waitFor(
        async () => got || ((await c.broker.inspectQueue(dlq))?.messages ?? 0) > 0,
        "a delivery, or the letter",
      );
      if (got) deliveries++;
      await dying.close();
    }
    assert.equal(deliveries, 3, "DELIVERY_LIMIT (2) + 1 deliveries");
    const letter = (await c.broker.get(dlq))!;
    assert.equal(letter.properties.headers?.["x-first-death-reason"], "delivery_limit");
    assert.equal(letter.properties.correlationId, "poison");
    c.broker.ack(letter);
  } finally {
    await c.close();
  }
}

async function onBroker(t: Deno.TestContext, url: string): Promise<void> {
  const version = await versionOf(url);
  console.log(`RabbitMQ ${version}`);
  await t.step(
    `RabbitMQ ${version}: a task handed back on SIGTERM is never counted`,
    () => handBacksAreNotCounted(url),
  );
  await t.step(
    `RabbitMQ ${version}: a refused settle returns the task until the delivery limit`,
    () => refusedSettlesReachTheLimit(url),
  );
  await t.step(
    `RabbitMQ ${version}: the queue's own x-delivery-limit dead-letters a request whose consumer dies each time`,
    () => theBrokerLimitCatchesAConsumerThatDies(url),
  );
}

Deno.test({
  name: "delivery limit on the host's RabbitMQ (AMQP_URL)",
  ignore: NEEDS_RABBITMQ,
  fn: (t) => onBroker(t, AMQP_URL),
});

Deno.test({
  name: "delivery limit on the compose image's RabbitMQ (RABBITMQ_IMAGE), in a container",
  ignore: NEEDS_DOCKER,
  async fn(t) {
    const container = await startContainer();
    try {
      await onBroker(t, container.url);
    } finally {
      await container.stop();
    }
  },
});
