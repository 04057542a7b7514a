/**
 * How a worker gives deliveries back and when it acknowledges them, in
 * process on the in-memory broker, which counts deliveries as RabbitMQ 4.3
 * does (a `basic.nack` with requeue counts nothing, a `basic.reject` or a
 * consumer gone counts one): a refused outcome returns the task as a failed
 * delivery until the delivery limit ends it; a task handed back unfinished
 * is copied back, counted by no version; nothing is acknowledged before its
 * outcome is confirmed; every queue it needs is declared while it starts.
 */

import assert from "node:assert/strict";
import {
  type Broker,
  type Delivery,
  PublishRefusedError,
  type QueueOptions,
} from "../../core/broker/broker.ts";
import { MemoryBroker } from "../../core/broker/mod.ts";
import {
  deadLetterQueueOf,
  encodeCeleryRequest,
  encodeRequest,
  type Message,
  parseReply,
  RETRY_DELAYS_MS,
  retryQueueOf,
  retryQueuesOf,
  type TaskReply,
} from "../../core/contract/mod.ts";
import { defineFunction } from "../define_function.ts";
import { createLogger } from "../../core/log.ts";
import type { HandlerOutcome } from "../attempt.ts";
import { type HandlerRunner, inProcessRunner } from "../handler_runner.ts";
import { startWorker } from "./consumer.ts";
import { waitFor } from "../../tests/_helpers.ts";

let runs = 0;
const flaky = defineFunction({
  name: "flaky",
  queue: "queue_flaky",
  celeryNames: ["tasks.flaky"],
  retry: { maxRetries: 1, baseDelayMs: 5, maxDelayMs: 5 },
  async handler(payload) {
    runs++;
    if (payload.hang) await new Promise(() => {});
    if (payload.fail) throw new Error("failed");
    return "ok";
  },
});

/** `broker` with some methods replaced; the rest bound to it. */
function override(broker: Broker, methods: Partial<Broker>): Broker {
  return new Proxy(broker, {
    get(target, key, receiver) {
      if (key in methods) return methods[key as keyof Broker];
      const value = Reflect.get(target, key, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

async function replies(client: Broker) {
  const received: TaskReply[] = [];
  const replyTo = await client.openReplyQueue((message) => {
    const parsed = parseReply(message.body);
    if (parsed.ok) received.push(parsed.value);
  });
  return { received, replyTo };
}

Deno.test("startWorker() declares a retry queue for every delay of the ladder while it starts", async () => {
  const hub = new MemoryBroker();
  const worker = await startWorker(inProcessRunner(flaky), hub.connect("flaky"), { workerId: "w" });
  const client = hub.connect("admin");
  try {
    for (const name of retryQueuesOf(flaky.queue)) {
      assert.ok(await client.inspectQueue(name), `${name} exists`);
    }
  } finally {
    await worker.stop(0);
    await hub.shutdown();
  }
});

Deno.test("startWorker() starts with the retry queues it could declare, and rounds retries to those", async () => {
  runs = 0;
  const hub = new MemoryBroker();
  const inner = hub.connect("flaky");
  const lines: Record<string, unknown>[] = [];
  // The broker refuses the short delays (as it refuses new queues past its limit).
  const refused = RETRY_DELAYS_MS.filter((delay) => delay > 0 && delay < 1_000);
  const limited = override(inner, {
    declareQueue(name: string, options?: QueueOptions) {
      if (refused.some((delay) => name === retryQueueOf(flaky.queue, delay))) {
        return Promise.reject(new Error(`cannot declare queue '${name}': queue limit reached`));
      }
      return inner.declareQueue(name, options);
    },
  });
  const worker = await startWorker(inProcessRunner(flaky), limited, {
    workerId: "w",
    log: createLogger({ write: (line) => lines.push(JSON.parse(line)) }),
  });
  const client = hub.connect("dispatcher");
  const { received, replyTo } = await replies(client);
  try {
    const warning = lines.find((l) => String(l.msg).startsWith("Cannot declare some retry queues"));
    assert.deepEqual(warning?.delays_ms, refused);
    // A 5 ms backoff rounds to the nearest delay left: none at all.
    await client.publish(
      flaky.queue,
      encodeRequest("flaky", { fail: true }, { taskId: "t", replyTo }),
    );
    await waitFor(() => received.length === 1, "the reply after the retry");
    assert.equal(received[0].attempts, 2);
    assert.equal(runs, 2);
  } finally {
    await worker.stop(0);
    await hub.shutdown();
  }
});

Deno.test("startWorker() returns a task whose dead letter is refused as a failed delivery, until the delivery limit ends it", async () => {
  const hub = new MemoryBroker();
  const inner = hub.connect("flaky");
  const dlq = deadLetterQueueOf(flaky.queue);
  const acks: string[] = [];
  let refusals = 0;
  const full = override(inner, {
    publish(queue: string, message: Message) {
      if (queue === dlq) {
        refusals++;
        return Promise.reject(new PublishRefusedError(`Cannot publish to '${dlq}'`, dlq));
      }
      return inner.publish(queue, message);
    },
    ack(delivery: Delivery) {
      // The cancellations stream's own acknowledgements are not this task's.
      if (delivery.queue === flaky.queue) acks.push(String(delivery.properties.correlationId));
      inner.ack(delivery);
    },
  });
  const worker = await startWorker(inProcessRunner(flaky), full, {
    workerId: "w",
    deliveryLimit: 2,
    returnDelayMs: 5,
  });
  const client = hub.connect("dispatcher");
  try {
    // Breaks the contract: its outcome is a dead letter, which the full DLQ refuses.
    await client.publish(flaky.queue, {
      body: new TextEncoder().encode("{oops"),
      properties: { contentType: "application/json", correlationId: "bad" },
    });
    // Refused as rejected (count 0, 1), then as delivery_limit (count 2), then the
    // broker's own limit (3 returns) dead-letters it, past the worker.
    await waitFor(async () => (await client.inspectQueue(dlq))?.messages === 1, "dead-lettered");
    const letter = (await client.get(dlq))!;
    assert.equal(letter.properties.headers?.["x-first-death-reason"], "delivery_limit");
    assert.equal(letter.properties.headers?.["x-delivery-count"], 3);
    assert.equal(refusals, 3, "refused as rejected twice, then as delivery_limit");
    assert.equal(worker.stats.settlesRefused, 3);
    assert.deepEqual(acks, [], "never acknowledged while its dead letter was refused");
  } finally {
    await worker.stop(0);
    await hub.shutdown();
  }
});

Deno.test("startWorker() acknowledges a retry and a dead letter only once the broker confirmed them", async () => {
  runs = 0;
  const hub = new MemoryBroker();
  const inner = hub.connect("flaky");
  const log: string[] = [];
  const gates = new Map<string, () => void>();
  const gated = override(inner, {
    async publish(queue: string, message: Message) {
      const kind = queue.includes(".retry.") ? "retry" : queue.endsWith(".dlq") ? "dlq" : "";
      if (kind) {
        log.push(`publish ${kind}`);
        await new Promise<void>((resolve) => gates.set(kind, resolve));
      }
      await inner.publish(queue, message);
      if (kind) log.push(`published ${kind}`);
    },
    ack(delivery: Delivery) {
      if (delivery.queue === flaky.queue) log.push("ack");
      inner.ack(delivery);
    },
  });
  const worker = await startWorker(inProcessRunner(flaky), gated, { workerId: "w" });
  const client = hub.connect("dispatcher");
  const { received, replyTo } = await replies(client);
  try {
    await client.publish(
      flaky.queue,
      encodeRequest("flaky", { fail: true }, { taskId: "t", replyTo }),
    );
    for (const kind of ["retry", "dlq"]) {
      await waitFor(() => gates.has(kind), `the ${kind} under way`);
      // Anything already due (an ack) happens within a turn or two.
      await new Promise((resolve) => setTimeout(resolve, 20));
      assert.equal(log.at(-1), `publish ${kind}`, `nothing acknowledged before the ${kind}`);
      const acks = log.filter((entry) => entry === "ack").length;
      gates.get(kind)!();
      await waitFor(
        () => log.filter((entry) => entry === "ack").length > acks,
        `the ack after the ${kind}`,
      );
    }
    assert.deepEqual(log, [
      "publish retry",
      "published retry",
      "ack",
      "publish dlq",
      "published dlq",
      "ack",
    ]);
    await waitFor(() => received.length === 1, "the error reply");
  } finally {
    await worker.stop(0);
    await hub.shutdown();
  }
});

/**
 * A runner whose first `times` attempts end as a sandbox restart would end
 * them (`requeue`), then runs normally.
 */
function restarting(
  requeue: "hand_back" | "failed_delivery",
  times = 1,
): HandlerRunner & { restarts: number } {
  const inner = inProcessRunner(flaky);
  const runner = {
    info: inner.info,
    restarts: 0,
    run(...args: Parameters<HandlerRunner["run"]>): Promise<HandlerOutcome> {
      if (runner.restarts++ < times) {
        // In a later turn, as a sandbox's failure arrives: a loop of returns
        // never starves the timers.
        return new Promise((resolve) =>
          setTimeout(() =>
            resolve({
              ok: false,
              retryable: true,
              requeue,
              error: { type: "WorkerRestarted", message: "its sandbox was restarted" },
            }), 0)
        );
      }
      return inner.run(...args);
    },
    abortAll: inner.abortAll,
    close: inner.close,
  };
  return runner;
}

Deno.test("startWorker() hands a task its sandbox restart interrupted back as a copy that keeps its failed deliveries", async () => {
  runs = 0;
  const hub = new MemoryBroker();
  const client = hub.connect("dispatcher");
  const { received, replyTo } = await replies(client);
  // A first worker process dies during the task: one failed delivery.
  const first = hub.connect("flaky");
  const dying = await startWorker(inProcessRunner(flaky), first, {
    workerId: "w1",
    deliveryLimit: 2,
  });
  await client.publish(
    flaky.queue,
    encodeRequest("flaky", { hang: true }, { taskId: "t", replyTo }),
  );
  await waitFor(() => runs === 1, "the first delivery runs");
  dying.abandon();
  await first.close();
  // The next one gets it (x-delivery-count 1), and its sandbox restarts under it.
  const second = hub.connect("flaky");
  let copy: Message | undefined;
  const recording = override(second, {
    publish(queue: string, message: Message) {
      if (queue === flaky.queue) copy = message;
      return second.publish(queue, message);
    },
  });
  const worker = await startWorker(restarting("hand_back"), recording, {
    workerId: "w2",
    deliveryLimit: 2,
  });
  try {
    await waitFor(() => copy !== undefined, "handed back as a copy");
    const headers = copy!.properties.headers!;
    assert.equal(headers["x-prior-deliveries"], 1, "the failed delivery is carried over");
    assert.equal(headers["x-sender"], "dispatcher");
    assert.equal(headers["x-delivery-count"], undefined);
    assert.equal(worker.stats.handedBack, 1);
    // The copy's delivery counts 1 of DELIVERY_LIMIT 2: it runs (and hangs: stop here).
    await waitFor(() => runs === 2, "the copy runs");
    assert.equal(received.length, 0);
    assert.equal(worker.stats.failed, 0, "not dead-lettered as delivery_limit");
  } finally {
    worker.abandon();
    await hub.shutdown();
  }
});

Deno.test("startWorker() returns a task whose sandbox crashed under it as a failed delivery, so one that always crashes it reaches the delivery limit", async () => {
  runs = 0;
  const hub = new MemoryBroker();
  const client = hub.connect("dispatcher");
  const { received, replyTo } = await replies(client);
  const runner = restarting("failed_delivery", Infinity);
  const worker = await startWorker(runner, hub.connect("flaky"), {
    workerId: "w",
    deliveryLimit: 3,
  });
  try {
    await client.publish(flaky.queue, encodeRequest("flaky", {}, { taskId: "crash", replyTo }));
    await waitFor(() => received.length === 1, "the delivery_limit reply");
    assert.equal(received[0].error?.type, "DeliveryLimit");
    assert.equal(runner.restarts, 3, "ran once per delivery the limit allows, then no more");
    assert.equal(worker.stats.sandboxFailed, 3);
    assert.equal(worker.stats.handedBack, 0);
    const letter = (await client.get(deadLetterQueueOf(flaky.queue)))!;
    assert.equal(letter.properties.headers?.["x-dlq-reason"], "delivery_limit");
    assert.equal(letter.properties.headers?.["x-dlq-deliveries"], 3);
  } finally {
    await worker.stop(0);
    await hub.shutdown();
  }
});

Deno.test("startWorker() writes the runtime's x-sender on a retry, never the request's own", async () => {
  runs = 0;
  const hub = new MemoryBroker();
  const inner = hub.connect("flaky");
  const published: Message[] = [];
  const recording = override(inner, {
    publish(queue: string, message: Message) {
      if (queue.includes(".retry.") || queue.endsWith(".dlq")) published.push(message);
      return inner.publish(queue, message);
    },
  });
  const worker = await startWorker(inProcessRunner(flaky), recording, {
    workerId: "w",
    allowedSenders: ["*"],
  });
  const client = hub.connect("task_other");
  try {
    const request = encodeRequest("flaky", { fail: true }, { taskId: "t" });
    request.properties.headers = { "x-sender": "admin", "x-prior-deliveries": 99 };
    await client.publish(flaky.queue, request);
    await waitFor(() => published.length === 2, "a retry and a dead letter");
    const [retry, letter] = published;
    assert.equal(retry.properties.headers?.["x-sender"], "task_other");
    assert.equal(retry.properties.headers?.["x-prior-deliveries"], undefined);
    assert.equal(letter.properties.headers?.["x-dlq-sender"], "task_other");
    assert.equal(letter.properties.headers?.["x-sender"], undefined);
    assert.equal(letter.properties.headers?.["x-dlq-allowed-senders"], "*,flaky");
  } finally {
    await worker.stop(0);
    await hub.shutdown();
  }
});

Deno.test("startWorker() refuses a Celery eta further away than maxEtaMs, and waits for a nearer one in hops of the ladder", async () => {
  runs = 0;
  const hub = new MemoryBroker();
  const inner = hub.connect("flaky");
  const hops: string[] = [];
  const recording = override(inner, {
    publish(queue: string, message: Message) {
      if (queue.includes(".retry.")) hops.push(queue);
      return inner.publish(queue, message);
    },
  });
  const worker = await startWorker(inProcessRunner(flaky), recording, {
    workerId: "w",
    maxEtaMs: 60_000,
  });
  const client = hub.connect("celery_client");
  const celery = (id: string, etaMs: number) => {
    const message = encodeCeleryRequest("tasks.flaky", {}, { taskId: id });
    message.properties.headers!.eta = new Date(Date.now() + etaMs).toISOString();
    return client.publishToExchange(flaky.queue, message, flaky.queue);
  };
  try {
    await celery("far", 61_000);
    await celery("near", 120);
    const dlq = deadLetterQueueOf(flaky.queue);
    await waitFor(
      async () => (await client.inspectQueue(dlq))?.messages === 1,
      "the far one refused",
    );
    const letter = (await client.get(dlq))!;
    assert.equal(letter.properties.headers?.["x-dlq-reason"], "rejected");
    assert.match(
      String(letter.properties.headers?.["x-dlq-error-message"]),
      /Cannot wait for the Celery eta .* ms away: this worker waits at most 60000 ms \(MAX_ETA_MS\)/,
    );
    await waitFor(() => runs === 1, "the near one ran");
    // 120 ms: a hop of 100 ms, then what is left (a hop of 20, or none within the slack).
    assert.equal(hops[0], retryQueueOf(flaky.queue, 100));
    assert.ok(hops.every((hop) => /\.retry\.(100|20|10|5)$/.test(hop)), hops.join(", "));
  } finally {
    await worker.stop(0);
    await hub.shutdown();
  }
});
