/**
 * One suite, every broker: each case runs against the in-memory broker and
 * against RabbitMQ, each reached the way the product reaches it (`connect()`
 * with a URL, which picks the backend by its scheme), so the fake the unit
 * tests rely on cannot drift from the real thing. A new backend of
 * `core/broker/` is a row of `BACKENDS`.
 */

import assert from "node:assert/strict";
import { connectAmqp } from "../core/broker/amqp/connect_amqp.ts";
import type { AmqpBroker } from "../core/broker/amqp/amqp_broker.ts";
import {
  type Broker,
  connect,
  type Delivery,
  MemoryBroker,
  PublishRefusedError,
} from "../core/broker/mod.ts";
import { isReplyDestination, type Message } from "../core/contract/mod.ts";
import { AMQP_URL, NEEDS_RABBITMQ } from "./_infra.ts";
import { uniqueName, waitFor } from "./_helpers.ts";

interface Backend {
  name: string;
  ignore: boolean;
  /** Opens a session whose `connect()` gives independent connections. */
  open(): { connect(): Promise<Broker>; shutdown(): Promise<void> };
}

/** Connections to `url` through the seam; `stop` ends what serves it. */
function session(url: string, stop = () => Promise.resolve()) {
  const opened: Broker[] = [];
  return {
    async connect() {
      const broker = await connect({ url }, { connectionName: "conformance-test" });
      opened.push(broker);
      return broker;
    },
    async shutdown() {
      await Promise.all(opened.map((broker) => broker.close()));
      await stop();
    },
  };
}

const BACKENDS: Backend[] = [
  {
    name: "MemoryBroker",
    ignore: false,
    open() {
      const broker = new MemoryBroker();
      return session(broker.serve(), () => broker.shutdown());
    },
  },
  {
    name: "AmqpBroker",
    ignore: NEEDS_RABBITMQ,
    open: () => session(AMQP_URL),
  },
];

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function message(text: string, properties: Message["properties"] = {}): Message {
  return { body: encoder.encode(text), properties };
}

type Session = ReturnType<Backend["open"]>;

/** Names a test creates, deleted after it whatever happens. */
interface Created {
  queues: string[];
  exchanges: string[];
}

function conformance(
  name: string,
  fn: (session: Session, queues: string[], created: Created) => Promise<void>,
) {
  for (const backend of BACKENDS) {
    Deno.test({
      name: `${backend.name}: ${name}`,
      ignore: backend.ignore,
      async fn() {
        const session = backend.open();
        const created: Created = { queues: [], exchanges: [] };
        try {
          await fn(session, created.queues, created);
        } finally {
          const admin = await session.connect().catch(() => undefined);
          for (const queue of created.queues) await admin?.deleteQueue(queue).catch(() => {});
          for (const exchange of created.exchanges) {
            await admin?.deleteExchange(exchange).catch(() => {});
          }
          await session.shutdown();
        }
      },
    });
  }
}

conformance("declareQueue() is idempotent and refuses other settings", async (session, queues) => {
  const broker = await session.connect();
  const queue = uniqueName("conf_declare");
  queues.push(queue);
  assert.deepEqual(await broker.declareQueue(queue), { name: queue, messages: 0, consumers: 0 });
  assert.deepEqual(await broker.declareQueue(queue), { name: queue, messages: 0, consumers: 0 });
  await assert.rejects(
    () => broker.declareQueue(queue, { messageTtlMs: 1000 }),
    (error: Error) => error instanceof TypeError && error.message.includes(queue),
  );
  // A refused declaration must not break the connection.
  await broker.publish(queue, message("still works"));
  await waitFor(async () => (await broker.inspectQueue(queue))?.messages === 1, "message counted");
});

conformance(
  "inspectQueue() returns null for a missing queue and counts otherwise",
  async (session, queues) => {
    const broker = await session.connect();
    const queue = uniqueName("conf_inspect");
    assert.equal(await broker.inspectQueue(queue), null);
    queues.push(queue);
    await broker.declareQueue(queue);
    await broker.publish(queue, message("one"));
    await broker.publish(queue, message("two"));
    await waitFor(async () => (await broker.inspectQueue(queue))?.messages === 2, "two messages");
    // Still usable after a lookup of a missing queue.
    assert.equal(await broker.inspectQueue(uniqueName("conf_missing")), null);
    assert.equal((await broker.inspectQueue(queue))?.consumers, 0);
  },
);

conformance(
  "publish() and consume() carry body and properties unchanged",
  async (session, queues) => {
    const broker = await session.connect();
    const queue = uniqueName("conf_props");
    queues.push(queue);
    await broker.declareQueue(queue);
    const received: Delivery[] = [];
    await broker.consume(queue, (delivery) => received.push(delivery), { prefetch: 10 });
    const properties = {
      contentType: "application/json",
      correlationId: "corr-1",
      replyTo: "somewhere",
      messageId: "msg-1",
      type: "task.result",
      persistent: true,
      headers: { "x-attempt": 2, "x-text": "hello" },
    };
    await broker.publish(queue, message('{"a":1}', properties));
    await waitFor(() => received.length === 1, "delivery");
    const [delivery] = received;
    assert.equal(decoder.decode(delivery.body), '{"a":1}');
    assert.equal(delivery.queue, queue);
    assert.equal(delivery.redelivered, false);
    for (const [key, value] of Object.entries(properties)) {
      assert.deepEqual(delivery.properties[key as keyof typeof properties], value, key);
    }
    broker.ack(delivery);
  },
);

conformance(
  "consume() holds at most `prefetch` unacknowledged deliveries",
  async (session, queues) => {
    const broker = await session.connect();
    const queue = uniqueName("conf_prefetch");
    queues.push(queue);
    await broker.declareQueue(queue);
    for (let i = 0; i < 5; i++) await broker.publish(queue, message(`m${i}`));
    const received: Delivery[] = [];
    await broker.consume(queue, (delivery) => received.push(delivery), { prefetch: 2 });
    await waitFor(() => received.length === 2, "two deliveries");
    // The broker's own count, not a pause: it still holds the other three
    // back, so it delivered no more than two to anyone.
    assert.equal((await broker.inspectQueue(queue))?.messages, 3);
    assert.equal(received.length, 2);
    broker.ack(received[0]);
    await waitFor(() => received.length === 3, "a third delivery after one ack");
    assert.deepEqual(received.map((d) => decoder.decode(d.body)), ["m0", "m1", "m2"]);
    for (const delivery of received.slice(1)) broker.ack(delivery);
    await waitFor(() => received.length === 5, "the rest");
  },
);

conformance("consume() spreads deliveries over consumers round-robin", async (session, queues) => {
  const first = await session.connect();
  const second = await session.connect();
  const queue = uniqueName("conf_rr");
  queues.push(queue);
  await first.declareQueue(queue);
  const got = { first: 0, second: 0 };
  await first.consume(queue, (d) => {
    got.first++;
    first.ack(d);
  }, { prefetch: 1 });
  await second.consume(queue, (d) => {
    got.second++;
    second.ack(d);
  }, { prefetch: 1 });
  await waitFor(async () => (await first.inspectQueue(queue))?.consumers === 2, "two consumers");
  for (let i = 0; i < 10; i++) await first.publish(queue, message(`m${i}`));
  await waitFor(() => got.first + got.second === 10, "all ten delivered");
  assert.ok(got.first >= 3 && got.second >= 3, `uneven split ${JSON.stringify(got)}`);
});

conformance("nack() with requeue redelivers, marked redelivered", async (session, queues) => {
  const broker = await session.connect();
  const queue = uniqueName("conf_requeue");
  queues.push(queue);
  await broker.declareQueue(queue);
  const received: Delivery[] = [];
  await broker.consume(queue, (delivery) => received.push(delivery), { prefetch: 1 });
  await broker.publish(queue, message("again"));
  await waitFor(() => received.length === 1, "first delivery");
  broker.nack(received[0], true);
  await waitFor(() => received.length === 2, "redelivery");
  assert.equal(received[1].redelivered, true);
  assert.equal(decoder.decode(received[1].body), "again");
  broker.ack(received[1]);
});

conformance(
  "nack() without requeue dead-letters to the queue's deadLetterQueue",
  async (session, queues) => {
    const broker = await session.connect();
    const queue = uniqueName("conf_dlx");
    const dead = `${queue}.dead`;
    queues.push(queue, dead);
    await broker.declareQueue(dead);
    await broker.declareQueue(queue, { deadLetterQueue: dead });
    const received: Delivery[] = [];
    await broker.consume(queue, (delivery) => received.push(delivery), { prefetch: 1 });
    await broker.publish(queue, message("poison"));
    await waitFor(() => received.length === 1, "delivery");
    broker.nack(received[0], false);
    await waitFor(async () => (await broker.inspectQueue(dead))?.messages === 1, "dead letter");
    const letter = await broker.get(dead);
    assert.equal(decoder.decode(letter!.body), "poison");
    broker.ack(letter!);
  },
);

conformance("messageTtlMs moves expired messages to deadLetterQueue", async (session, queues) => {
  const broker = await session.connect();
  const target = uniqueName("conf_ttl_target");
  const delay = `${target}.delay`;
  queues.push(target, delay);
  await broker.declareQueue(target);
  await broker.declareQueue(delay, { messageTtlMs: 100, deadLetterQueue: target });
  const sent = Date.now();
  await broker.publish(delay, message("later", { headers: { "x-attempt": 2 } }));
  assert.equal((await broker.inspectQueue(target))?.messages, 0);
  await waitFor(async () => (await broker.inspectQueue(target))?.messages === 1, "expired", 5000);
  assert.ok(Date.now() - sent >= 90, "moved before its TTL");
  const moved = await broker.get(target);
  assert.equal(decoder.decode(moved!.body), "later");
  assert.equal(moved!.properties.headers?.["x-attempt"], 2);
  broker.ack(moved!);
});

conformance("close() returns unacknowledged deliveries to the queue", async (session, queues) => {
  const worker = await session.connect();
  const observer = await session.connect();
  const queue = uniqueName("conf_close");
  queues.push(queue);
  await worker.declareQueue(queue);
  const received: Delivery[] = [];
  await worker.consume(queue, (delivery) => received.push(delivery), { prefetch: 1 });
  await worker.publish(queue, message("unfinished"));
  await waitFor(() => received.length === 1, "delivery");
  assert.equal((await observer.inspectQueue(queue))?.messages, 0);
  await worker.close();
  assert.equal(await worker.closed, undefined);
  await waitFor(async () => (await observer.inspectQueue(queue))?.messages === 1, "requeued");
  const again = await observer.get(queue);
  assert.equal(again!.redelivered, true);
  observer.ack(again!);
});

conformance(
  "openReplyQueue() receives replies sent to the reply_to a consumer saw",
  async (session, queues) => {
    const caller = await session.connect();
    const server = await session.connect();
    const queue = uniqueName("conf_rpc");
    queues.push(queue);
    await server.declareQueue(queue);
    await server.consume(queue, async (delivery) => {
      await server.publish(delivery.properties.replyTo!, {
        body: encoder.encode(`re: ${decoder.decode(delivery.body)}`),
        properties: { correlationId: delivery.properties.correlationId },
      });
      server.ack(delivery);
    }, { prefetch: 1 });
    const replies: Message[] = [];
    const replyTo = await caller.openReplyQueue((reply) => replies.push(reply));
    await caller.publish(queue, message("ping", { replyTo, correlationId: "c-42" }));
    await waitFor(() => replies.length === 1, "reply");
    assert.equal(decoder.decode(replies[0].body), "re: ping");
    assert.equal(replies[0].properties.correlationId, "c-42");
  },
);

conformance("openReplyQueue() refuses a second reply queue on one connection", async (session) => {
  const broker = await session.connect();
  await broker.openReplyQueue(() => {});
  await assert.rejects(() => broker.openReplyQueue(() => {}), /second reply queue/);
  // The connection still works.
  const queue = uniqueName("conf_second_reply");
  assert.equal(await broker.inspectQueue(queue), null);
});

conformance("get() returns null on an empty queue", async (session, queues) => {
  const broker = await session.connect();
  const queue = uniqueName("conf_get");
  queues.push(queue);
  await broker.declareQueue(queue);
  assert.equal(await broker.get(queue), null);
});

conformance(
  "declareExchange() creates a missing exchange and leaves an existing one as it is",
  async (session, queues, created) => {
    const broker = await session.connect();
    const exchange = uniqueName("conf.exchange");
    created.exchanges.push(exchange);
    await broker.declareExchange(exchange, "fanout");
    await broker.declareExchange(exchange, "fanout", { durable: true });
    await broker.declareExchange(exchange, "fanout", { durable: false });
    // Still the durable exchange it was: a bound queue gets what is published.
    const queue = uniqueName("conf_exchange_kept");
    queues.push(queue);
    await broker.declareQueue(queue);
    await broker.bindQueue(queue, exchange);
    await broker.publishToExchange(exchange, message("kept"));
    await waitFor(async () => (await broker.inspectQueue(queue))?.messages === 1, "delivered");
  },
);

conformance(
  "publishToExchange() gives every bound queue one copy, properties unchanged",
  async (session, queues, created) => {
    const publisher = await session.connect();
    const subscriber = await session.connect();
    const exchange = uniqueName("conf.fanout");
    const [first, second, unbound] = ["one", "two", "unbound"].map((n) =>
      uniqueName(`conf_fan_${n}`)
    );
    created.exchanges.push(exchange);
    queues.push(first, second, unbound);
    await subscriber.declareExchange(exchange, "fanout");
    for (const queue of [first, second, unbound]) await subscriber.declareQueue(queue);
    await subscriber.bindQueue(first, exchange);
    await subscriber.bindQueue(first, exchange); // twice is the same as once
    await subscriber.bindQueue(second, exchange);
    const properties = { contentType: "application/json", correlationId: "c-1", replyTo: "back" };
    await publisher.publishToExchange(exchange, message('{"kind":"ping"}', properties));
    for (const queue of [first, second]) {
      await waitFor(async () => (await publisher.inspectQueue(queue))?.messages === 1, queue);
      const copy = (await subscriber.get(queue))!;
      assert.equal(decoder.decode(copy.body), '{"kind":"ping"}');
      for (const [key, value] of Object.entries(properties)) {
        assert.equal(copy.properties[key as keyof typeof properties], value, key);
      }
      subscriber.ack(copy);
    }
    assert.equal((await publisher.inspectQueue(unbound))?.messages, 0);
  },
);

conformance(
  "publishToExchange() and bindQueue() reject what does not exist, and the connection lives on",
  async (session, queues, created) => {
    const broker = await session.connect();
    const missing = uniqueName("conf.missing");
    const exchange = uniqueName("conf.bind");
    const queue = uniqueName("conf_bind");
    created.exchanges.push(exchange);
    queues.push(queue);
    await assert.rejects(
      () => broker.publishToExchange(missing, message("lost")),
      (error: Error) => error instanceof TypeError && error.message.includes(missing),
    );
    await broker.declareExchange(exchange, "fanout");
    await assert.rejects(
      () => broker.bindQueue(uniqueName("conf_nothere"), exchange),
      (error: Error) => error instanceof TypeError && /does not exist/.test(error.message),
    );
    await broker.declareQueue(queue);
    await assert.rejects(
      () => broker.bindQueue(queue, missing),
      (error: Error) => error instanceof TypeError && error.message.includes(missing),
    );
    // Consumers and publishing still work after the refusals.
    const received: Delivery[] = [];
    await broker.consume(queue, (delivery) => received.push(delivery), { prefetch: 1 });
    await broker.bindQueue(queue, exchange);
    await broker.publishToExchange(exchange, message("arrives"));
    await waitFor(() => received.length === 1, "delivery through the exchange");
    broker.ack(received[0]);
  },
);

conformance(
  "an exclusive queue is refused to other connections and deleted with its own",
  async (session, queues) => {
    const owner = await session.connect();
    const other = await session.connect();
    const queue = uniqueName("conf_exclusive");
    queues.push(queue);
    const options = { durable: false, exclusive: true, autoDelete: true };
    await owner.declareQueue(queue, options);
    await owner.declareQueue(queue, options);
    await assert.rejects(
      () => other.declareQueue(queue, options),
      (error: Error) => error instanceof TypeError && /exclusively/.test(error.message),
    );
    await owner.publish(queue, message("mine"));
    await waitFor(async () => (await owner.inspectQueue(queue))?.messages === 1, "counted");
    await owner.close();
    await waitFor(async () => (await other.inspectQueue(queue)) === null, "deleted with owner");
  },
);

conformance(
  "an autoDelete queue is deleted when its last consumer is cancelled",
  async (session, queues) => {
    const broker = await session.connect();
    const queue = uniqueName("conf_autodelete");
    queues.push(queue);
    await broker.declareQueue(queue, { autoDelete: true });
    const first = await broker.consume(queue, () => {}, { prefetch: 1 });
    const second = await broker.consume(queue, () => {}, { prefetch: 1 });
    await first.cancel();
    assert.equal((await broker.inspectQueue(queue))?.consumers, 1, "one consumer left");
    await second.cancel();
    await waitFor(async () => (await broker.inspectQueue(queue)) === null, "deleted");
  },
);

conformance(
  "publish() to a full queue that refuses more rejects with PublishRefusedError, and the connection goes on",
  async (session, queues) => {
    const broker = await session.connect();
    const full = uniqueName("conf_full");
    const other = uniqueName("conf_other");
    queues.push(full, other);
    // Classic: a quorum queue takes one message past a length of 0 before it refuses.
    await broker.declareQueue(full, { maxLength: 0 });
    await broker.declareQueue(other);
    await assert.rejects(
      () => broker.publish(full, message("refused")),
      (error: Error) =>
        error instanceof PublishRefusedError && error.target === full &&
        /as the broker refused it/.test(error.message),
    );
    await broker.publish(other, message("accepted"));
    await waitFor(async () => (await broker.inspectQueue(other))?.messages === 1, "accepted");
    assert.equal((await broker.inspectQueue(full))?.messages, 0);
  },
);

conformance(
  "reject() returns a delivery to a quorum queue as a failed one, which x-delivery-count counts",
  async (session, queues) => {
    const broker = await session.connect();
    const queue = uniqueName("conf_reject");
    queues.push(queue);
    await broker.declareQueue(queue, { type: "quorum", durable: true });
    await broker.publish(queue, message("poison"));
    const received: Delivery[] = [];
    await broker.consume(queue, (delivery) => received.push(delivery), { prefetch: 1 });
    await waitFor(() => received.length === 1, "first delivery");
    broker.reject(received[0]);
    await waitFor(() => received.length === 2, "second delivery");
    assert.equal(received[1].redelivered, true);
    assert.equal(received[1].properties.headers?.["x-delivery-count"], 1);
    broker.reject(received[1]);
    await waitFor(() => received.length === 3, "third delivery");
    assert.equal(received[2].properties.headers?.["x-delivery-count"], 2);
    broker.ack(received[2]);
  },
);

conformance(
  "openReplyQueue() gives replies an address a worker takes as Direct Reply-to",
  async (session) => {
    const caller = await session.connect();
    const replyTo = await caller.openReplyQueue(() => {});
    // Before publishing, RabbitMQ's address is the bare pseudo-queue; the
    // in-memory broker names its own at once, in the form RabbitMQ rewrites it to.
    assert.ok(isReplyDestination(replyTo, "reply"), replyTo);
    assert.ok(isReplyDestination(replyTo, "pong"), replyTo);
  },
);

conformance(
  "publish() with a BCC header copies the message to those queues too, without the header",
  async (session, queues) => {
    const broker = await session.connect();
    const queue = uniqueName("conf_bcc");
    const copy = uniqueName("conf_bcc_copy");
    queues.push(queue, copy);
    await broker.declareQueue(queue, { type: "quorum" });
    await broker.declareQueue(copy, { type: "quorum" });
    await broker.publish(queue, message("both", { headers: { BCC: [copy], kept: "yes" } }));
    await waitFor(async () => (await broker.inspectQueue(copy))?.messages === 1, "the copy");
    for (const name of [queue, copy]) {
      const got = (await broker.get(name))!;
      broker.ack(got);
      assert.equal(decoder.decode(got.body), "both");
      assert.equal(got.properties.headers?.BCC, undefined, `${name} has no BCC header`);
      assert.equal(got.properties.headers?.kept, "yes");
      // The copy keeps the routing key it was published with: it tells a copy from a reply.
      assert.equal(got.routingKey, queue);
      assert.equal(got.properties.userId, broker.user);
    }
  },
);

conformance(
  "a stream gives every consumer every message from its offset, and keeps them",
  async (session, queues) => {
    const writer = await session.connect();
    const stream = uniqueName("conf_stream");
    queues.push(stream);
    const options = { type: "stream" as const, maxAgeMs: 3_600_000, maxBytes: 1_000_000 };
    await writer.declareQueue(stream, options);
    await writer.publish(stream, message("old"));
    const fromFirst: string[] = [];
    const fromNext: string[] = [];
    const reader = await session.connect();
    await reader.consume(stream, (d) => {
      fromFirst.push(decoder.decode(d.body));
      reader.ack(d);
    }, { prefetch: 10, offset: "first" });
    await waitFor(() => fromFirst.length === 1, "the first reader reads what was there");
    const late = await session.connect();
    await late.consume(stream, (d) => {
      fromNext.push(decoder.decode(d.body));
      late.ack(d);
    }, { prefetch: 10, offset: "next" });
    // A consumer is in place once a message sent now reaches the first reader.
    await writer.publish(stream, message("new"));
    await waitFor(() => fromFirst.length === 2 && fromNext.length === 1, "both read the new one");
    assert.deepEqual(fromFirst, ["old", "new"]);
    assert.deepEqual(fromNext, ["new"]);
    // Reading took nothing away: a third reader from a time before both reads both.
    const third: string[] = [];
    const since = await session.connect();
    await since.consume(stream, (d) => {
      third.push(decoder.decode(d.body));
      since.ack(d);
    }, { prefetch: 10, offset: { sinceMs: Date.now() - 60_000 } });
    await waitFor(() => third.length === 2, "a reader by time reads both");
    assert.deepEqual(third, ["old", "new"]);
  },
);

conformance(
  "a refused stream consume leaves the connection serving (a cluster node without a replica refuses so)",
  async (session, queues) => {
    const broker = await session.connect();
    const missing = uniqueName("conf_no_stream");
    await assert.rejects(
      () => broker.consume(missing, () => {}, { prefetch: 10, offset: "first" }),
      Error,
      missing,
    );
    // The same connection goes on: it declares, publishes and consumes.
    const queue = uniqueName("conf_after_stream");
    queues.push(queue);
    await broker.declareQueue(queue, { durable: true });
    const got: string[] = [];
    await broker.consume(queue, (d) => {
      got.push(decoder.decode(d.body));
      broker.ack(d);
    }, { prefetch: 10 });
    await broker.publish(queue, message("still here"));
    await waitFor(() => got.length === 1, "the connection still serves");
    assert.deepEqual(got, ["still here"]);
  },
);

Deno.test({
  name: "AmqpBroker batches its socket writes with the pinned amqplib (writesCoalesced)",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const broker = await connectAmqp(AMQP_URL, { connectionName: "conformance-writes" });
    const queue = uniqueName("conf_writes");
    try {
      // Reaches into amqplib's internals: should they change, batching stops
      // silently; this is the test that notices.
      assert.equal((broker as AmqpBroker).writesCoalesced, true);
      await broker.declareQueue(queue);
      await Promise.all(
        Array.from({ length: 50 }, (_, i) => broker.publish(queue, message(`${i}`))),
      );
      await waitFor(async () => (await broker.inspectQueue(queue))?.messages === 50, "50 messages");
    } finally {
      await broker.deleteQueue(queue).catch(() => {});
      await broker.close();
    }
  },
});

conformance(
  "a single-active-consumer queue feeds one consumer only; when its connection goes, the next takes what it held",
  async (session, queues) => {
    const first = await session.connect();
    const second = await session.connect();
    const queue = uniqueName("conf_single");
    queues.push(queue);
    await first.declareQueue(queue, { type: "quorum", singleActiveConsumer: true });
    await first.publish(queue, message("one"));
    await first.publish(queue, message("two"));
    const got = { first: [] as string[], second: [] as string[] };
    await first.consume(queue, (d) => got.first.push(decoder.decode(d.body)), { prefetch: 1 });
    await waitFor(() => got.first.length === 1, "the first consumer's delivery");
    await second.consume(queue, (d) => got.second.push(decoder.decode(d.body)), { prefetch: 5 });
    // The second has room for both, yet the broker holds "two" back for the
    // active consumer, whose prefetch is full: ask it rather than wait. (A
    // quorum queue counts its active consumer only among its consumers.)
    assert.equal((await first.inspectQueue(queue))?.messages, 1);
    assert.deepEqual(got, { first: ["one"], second: [] });
    await first.close();
    await waitFor(() => got.second.length === 2, "the next consumer takes over");
    assert.deepEqual(got.second, ["one", "two"]);
  },
);

conformance(
  "a topic exchange routes by pattern: * one word, # any words, one copy per queue",
  async (session, queues, created) => {
    const broker = await session.connect();
    const exchange = uniqueName("conf.topic");
    created.exchanges.push(exchange);
    const [exact, star, hash] = ["exact", "star", "hash"].map((n) => uniqueName(`conf_${n}`));
    queues.push(exact, star, hash);
    await broker.declareExchange(exchange, "topic");
    const patterns: Record<string, string[]> = {
      [exact]: ["order.created"],
      [star]: ["order.*"],
      // Two patterns that both match still give the queue one copy.
      [hash]: ["order.#", "#.created"],
    };
    const received = new Map<string, string[]>([[exact, []], [star, []], [hash, []]]);
    for (const [queue, keys] of Object.entries(patterns)) {
      await broker.declareQueue(queue);
      for (const key of keys) await broker.bindQueue(queue, exchange, key);
      await broker.consume(queue, (delivery) => {
        received.get(queue)!.push(decoder.decode(delivery.body));
        broker.ack(delivery);
      }, { prefetch: 10 });
    }
    for (const key of ["order.created", "order", "order.created.v2", "user.created"]) {
      await broker.publishToExchange(exchange, message(key), key, { isolated: true });
    }
    await waitFor(() => received.get(hash)!.length === 4, "every message for #");
    await waitFor(() => received.get(exact)!.length === 1 && received.get(star)!.length === 1, "");
    assert.deepEqual(received.get(exact), ["order.created"]);
    assert.deepEqual(received.get(star), ["order.created"]);
    assert.deepEqual(received.get(hash)!.sort(), [
      "order",
      "order.created",
      "order.created.v2",
      "user.created",
    ]);
  },
);
