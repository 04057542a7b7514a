/**
 * An in-process broker with RabbitMQ's semantics for what the product uses:
 * FIFO queues, round-robin consumers with a prefetch, ack and requeue,
 * per-queue and per-message TTL with dead-lettering (and `x-death`), a
 * quorum queue's delivery limit and `x-delivery-count` (counted as RabbitMQ
 * 4.3 counts: a reject or a consumer gone counts, a nack with requeue does
 * not), a full queue that refuses publishes, `user_id` checked against the
 * connection's user, reply queues, exclusive and auto-delete queues, single
 * active consumer queues, fanout and direct exchanges, streams (every consumer
 * reads every message from its offset; retention by age and size) and the
 * `BCC` header of sender-selected distribution. It backs the embedded default
 * (`deno task dispatch` with no broker) and the unit tests.
 *
 * @module
 */

import {
  type Broker,
  BrokerUnavailableError,
  type ConnectorOptions,
  type ExchangeOptions,
  type ExchangeType,
  type QueueInfo,
  type QueueOptions,
} from "../broker.ts";
import type { Message } from "../../contract/message.ts";
import { topicMatches } from "../../contract/cloud_events.ts";
import { splitUrls, userOfUrl } from "../url.ts";
import {
  type Entry,
  MemoryConnection,
  type MemoryConsumer,
  type MemoryExchange,
  type MemoryQueue,
  type MemoryQueues,
  type Returned,
} from "./memory_connection.ts";
import { GUEST_USER } from "../../contract/users.ts";

function sameOptions(a: QueueOptions, b: QueueOptions): boolean {
  const keys: (keyof QueueOptions)[] = [
    "messageTtlMs",
    "deadLetterQueue",
    "expiresMs",
    "deliveryLimit",
    "maxLength",
    "maxAgeMs",
    "maxBytes",
    "segmentBytes",
  ];
  return keys.every((key) => a[key] === b[key]) &&
    (a.exclusive ?? false) === (b.exclusive ?? false) &&
    (a.autoDelete ?? false) === (b.autoDelete ?? false) &&
    (a.durable ?? true) === (b.durable ?? true) &&
    (a.singleActiveConsumer ?? false) === (b.singleActiveConsumer ?? false) &&
    (a.type ?? "classic") === (b.type ?? "classic");
}

/** The brokers this process serves, by the name in their `memory://` URL. */
const SERVED = new Map<string, MemoryBroker>();

/**
 * The connector of `memory://<name>` URLs: a connection to the broker this
 * process serves under that name (see {@linkcode MemoryBroker.serve}), as
 * the URL's user (default `guest`).
 */
export function connectMemory(url: string, _options?: ConnectorOptions): Promise<Broker> {
  const name = new URL(splitUrls(url)[0]).hostname;
  const broker = SERVED.get(name);
  if (!broker) {
    return Promise.reject(
      new BrokerUnavailableError(
        `Cannot connect to memory://${name} as no broker of this process is served there: serve one with MemoryBroker.serve(), and connect to the URL it returns`,
        { unreachable: true },
      ),
    );
  }
  return Promise.resolve(broker.connect(userOfUrl(url)));
}

/**
 * The broker itself: queues shared by every connection made with
 * {@linkcode MemoryBroker.connect}.
 *
 * @example
 * ```ts
 * const broker = new MemoryBroker();
 * const connection = broker.connect();
 * await connection.declareQueue("queue_a");
 * ```
 */
export class MemoryBroker implements MemoryQueues {
  readonly #queues = new Map<string, MemoryQueue>();
  readonly #exchanges = new Map<string, MemoryExchange>();
  readonly #connections = new Set<MemoryConnection>();
  readonly #timers = new Set<ReturnType<typeof setTimeout>>();
  #servedAs: string | undefined;

  /**
   * Opens a connection: the {@linkcode Broker} a client uses.
   * @param user The user it authenticates as, stamped on what it publishes.
   */
  connect(user = GUEST_USER): Broker {
    const connection = new MemoryConnection(this, user);
    this.#connections.add(connection);
    return connection;
  }

  /** Drops every connection as if the broker crashed; queues and messages stay. */
  disconnectAll(reason = "the in-memory broker dropped the connection"): void {
    for (const connection of [...this.#connections]) {
      connection.drop(new BrokerUnavailableError(reason));
    }
  }

  /**
   * Lets `connect()` reach this broker at the URL it returns,
   * `memory://<name>` (with a user: `memory://task_a@<name>`), until
   * {@linkcode MemoryBroker.shutdown}.
   * @param name Unique in this process. @default {a new UUID}
   */
  serve(name: string = crypto.randomUUID()): string {
    if (this.#servedAs !== undefined) return `memory://${this.#servedAs}`;
    if (SERVED.has(name)) {
      throw new TypeError(
        `Cannot serve an in-process broker as 'memory://${name}' as another one is served there: give another name`,
      );
    }
    SERVED.set(name, this);
    this.#servedAs = name;
    return `memory://${name}`;
  }

  /** Closes every connection and cancels every timer. */
  async shutdown(): Promise<void> {
    if (this.#servedAs !== undefined) SERVED.delete(this.#servedAs);
    this.#servedAs = undefined;
    await Promise.all([...this.#connections].map((connection) => connection.close()));
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    this.#queues.clear();
    this.#exchanges.clear();
  }

  /** @internal */
  forget(connection: MemoryConnection, returned: readonly Returned[] = []): void {
    this.#connections.delete(connection);
    const left: MemoryQueue[] = [];
    for (const queue of [...this.#queues.values()]) {
      if (queue.owner === connection) {
        this.delete(queue.name);
        continue;
      }
      const before = queue.consumers.length;
      queue.consumers = queue.consumers.filter((consumer) => consumer.connection !== connection);
      if (queue.consumers.length !== before) left.push(queue);
    }
    // Back at the head before the next consumer is fed, as RabbitMQ returns
    // them: a single active consumer's successor gets them first.
    for (const { queue, entry } of returned) this.requeue(queue, entry, true);
    for (const queue of left) this.consumersLeft(queue);
  }

  /** @internal Called when consumers of `queue` went away. */
  consumersLeft(queue: MemoryQueue): void {
    if (queue.options.autoDelete && queue.consumers.length === 0) this.delete(queue.name);
    else this.pump(queue);
  }

  /**
   * @internal
   * @param requester The declaring connection.
   * @param owned When true, the queue is deleted with `requester`.
   */
  declare(
    name: string,
    options: QueueOptions,
    requester: MemoryConnection,
    owned = options.exclusive ?? false,
  ): MemoryQueue {
    const existing = this.#queues.get(name);
    if (existing) {
      this.checkAccess(existing, requester, `declare queue '${name}'`);
      if (!sameOptions(existing.options, options)) {
        throw new TypeError(
          `Cannot declare queue '${name}' as it exists with other options: delete it or declare it as it is`,
        );
      }
      return existing;
    }
    const queue: MemoryQueue = {
      name,
      options,
      entries: [],
      consumers: [],
      nextConsumer: 0,
      owner: owned ? requester : undefined,
    };
    this.#queues.set(name, queue);
    return queue;
  }

  /** @internal Refuses a connection other than the owner of an exclusive queue. */
  checkAccess(queue: MemoryQueue, connection: MemoryConnection | undefined, action: string): void {
    if (queue.options.exclusive && queue.owner !== connection) {
      throw new TypeError(
        `Cannot ${action} as another connection holds it exclusively: use a queue of your own`,
      );
    }
  }

  /** @internal */
  queue(name: string): MemoryQueue | undefined {
    return this.#queues.get(name);
  }

  /** @internal */
  delete(name: string): void {
    this.#queues.delete(name);
    for (const exchange of this.#exchanges.values()) exchange.bound.delete(name);
  }

  /** @internal */
  declareExchange(name: string, type: ExchangeType, options: ExchangeOptions): boolean {
    if (this.#exchanges.has(name)) return false;
    this.#exchanges.set(name, { type, options, bound: new Map() });
    return true;
  }

  /** @internal */
  deleteExchange(name: string): void {
    this.#exchanges.delete(name);
  }

  /** @internal */
  bind(queue: string, exchange: string, routingKey: string, action: string): void {
    const bound = this.exchange(exchange, action).bound;
    if (!bound.has(queue)) bound.set(queue, new Set());
    bound.get(queue)!.add(routingKey);
  }

  /** @internal The queues a message published to `exchange` with `routingKey` goes to. */
  route(exchange: string, routingKey: string, action: string): string[] {
    const { type, bound } = this.exchange(exchange, action);
    const matches = (keys: Set<string>) =>
      type === "fanout" ||
      (type === "topic"
        ? [...keys].some((pattern) => topicMatches(pattern, routingKey))
        : keys.has(routingKey));
    return [...bound].filter(([, keys]) => matches(keys)).map(([queue]) => queue);
  }

  /** @internal */
  exchange(name: string, action: string): MemoryExchange {
    const exchange = this.#exchanges.get(name);
    if (!exchange) {
      throw new TypeError(
        `Cannot ${action} as exchange '${name}' does not exist: declare it first`,
      );
    }
    return exchange;
  }

  /** @internal */
  info(queue: MemoryQueue): QueueInfo {
    return { name: queue.name, messages: queue.entries.length, consumers: queue.consumers.length };
  }

  /**
   * @internal Routes a message to a queue; unroutable ones are dropped.
   * False when the queue is full and refused it.
   */
  enqueue(
    name: string,
    message: Message,
    route: { exchange: string; routingKey: string } = { exchange: "", routingKey: name },
  ): boolean {
    const queue = this.#queues.get(name);
    if (!queue) return true;
    if (queue.options.type === "stream") {
      queue.entries.push({ message, redelivered: false, deliveries: 0, ...route, at: Date.now() });
      trimStream(queue);
      this.pump(queue);
      return true;
    }
    const { maxLength } = queue.options;
    if (maxLength !== undefined && queue.entries.length >= maxLength) return false;
    const expiration = message.properties.expiration;
    const entry: Entry = {
      message,
      redelivered: false,
      deliveries: 0,
      ...route,
      ...(expiration !== undefined && { expiresAt: Date.now() + Number(expiration) }),
    };
    queue.entries.push(entry);
    const ttl = Math.min(
      queue.options.messageTtlMs ?? Infinity,
      expiration !== undefined ? Number(expiration) : Infinity,
    );
    if (ttl < Infinity) {
      const timer = setTimeout(() => {
        this.#timers.delete(timer);
        const index = queue.entries.indexOf(entry);
        if (index === -1) return;
        queue.entries.splice(index, 1);
        this.deadLetter(queue, entry, "expired");
      }, ttl);
      this.#timers.add(timer);
    }
    this.pump(queue);
    return true;
  }

  /**
   * @internal Puts an unsettled entry back at the head of its queue, or
   * dead-letters it. `failed` returns count toward the delivery limit.
   */
  requeue(queue: MemoryQueue, entry: Entry, failed: boolean): void {
    if (!this.#queues.has(queue.name)) return;
    entry.redelivered = true;
    if (failed) entry.deliveries++;
    const limit = queue.options.type === "quorum" ? queue.options.deliveryLimit : undefined;
    if (limit !== undefined && entry.deliveries >= limit) {
      this.deadLetter(queue, entry, "delivery_limit");
      return;
    }
    if (entry.expiresAt !== undefined && entry.expiresAt <= Date.now()) {
      this.deadLetter(queue, entry, "expired");
      return;
    }
    queue.entries.unshift(entry);
    this.pump(queue);
  }

  /** @internal Sends `entry` to the queue's dead-letter queue, with `x-death` as RabbitMQ writes it. */
  deadLetter(queue: MemoryQueue, entry: Entry, reason: string): void {
    const target = queue.options.deadLetterQueue;
    if (target === undefined) return;
    const { expiration: _, ...properties } = entry.message.properties;
    const headers = { ...properties.headers };
    headers["x-death"] = [{ reason, queue: queue.name, count: 1, exchange: entry.exchange }];
    headers["x-first-death-reason"] ??= reason;
    headers["x-first-death-queue"] ??= queue.name;
    if (entry.deliveries > 0) headers["x-delivery-count"] = entry.deliveries;
    this.enqueue(target, { body: entry.message.body, properties: { ...properties, headers } });
  }

  /** @internal Hands queued messages to consumers with room, round-robin; a stream's to each. */
  pump(queue: MemoryQueue): void {
    if (queue.options.type === "stream") return pumpStream(queue);
    while (queue.entries.length > 0) {
      const consumer = this.#nextWithRoom(queue);
      if (!consumer) return;
      const entry = queue.entries.shift()!;
      if (entry.expiresAt !== undefined && entry.expiresAt <= Date.now()) {
        this.deadLetter(queue, entry, "expired");
        continue;
      }
      consumer.connection.deliver(queue, entry, consumer);
    }
  }

  #nextWithRoom(queue: MemoryQueue): MemoryConsumer | undefined {
    if (queue.options.singleActiveConsumer) {
      // The earliest consumer still there is the active one, as RabbitMQ picks it.
      const active = queue.consumers[0];
      return active && (active.autoAck || active.unacked < active.prefetch) ? active : undefined;
    }
    const count = queue.consumers.length;
    for (let i = 0; i < count; i++) {
      const index = (queue.nextConsumer + i) % count;
      const consumer = queue.consumers[index];
      if (consumer.autoAck || consumer.prefetch === 0 || consumer.unacked < consumer.prefetch) {
        queue.nextConsumer = (index + 1) % count;
        return consumer;
      }
    }
    return undefined;
  }
}

/** Hands each consumer of a stream every message from its offset on. */
function pumpStream(queue: MemoryQueue): void {
  const base = queue.base ?? 0;
  for (const consumer of queue.consumers) {
    consumer.next = Math.max(consumer.next ?? base, base);
    while (consumer.next < base + queue.entries.length) {
      consumer.connection.deliver(queue, queue.entries[consumer.next - base], consumer);
      consumer.next++;
    }
  }
}

/** Drops a stream's oldest messages beyond its age and size, as RabbitMQ's retention does. */
function trimStream(queue: MemoryQueue): void {
  const { maxAgeMs, maxBytes } = queue.options;
  const oldest = maxAgeMs === undefined ? -Infinity : Date.now() - maxAgeMs;
  let bytes = queue.entries.reduce((sum, entry) => sum + entry.message.body.byteLength, 0);
  while (
    queue.entries.length > 0 &&
    ((queue.entries[0].at ?? 0) < oldest || (maxBytes !== undefined && bytes > maxBytes))
  ) {
    bytes -= queue.entries.shift()!.message.body.byteLength;
    queue.base = (queue.base ?? 0) + 1;
  }
}
