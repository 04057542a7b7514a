/**
 * One connection to an in-process broker: the {@linkcode Broker} a client of
 * it uses, with its consumers and the deliveries it has not settled, the
 * queue state it shares with the broker, and what it needs of the broker
 * ({@linkcode MemoryQueues}, which `MemoryBroker` implements).
 *
 * @module
 */

import {
  type Broker,
  BrokerUnavailableError,
  type ConsumeOptions,
  type Consumer,
  type Delivery,
  type ExchangeOptions,
  type ExchangeType,
  PublishRefusedError,
  type QueueInfo,
  type QueueOptions,
} from "../broker.ts";
import type { Message } from "../../contract/message.ts";

/** A message in a queue, with what its deliveries so far have done to it. */
export interface Entry {
  message: Message;
  redelivered: boolean;
  /** Deliveries not settled before this one (a quorum queue's `x-delivery-count`). */
  deliveries: number;
  /** When a per-message `expiration` runs out (ms since the epoch). */
  expiresAt?: number;
  exchange: string;
  routingKey: string;
  /** Streams only: when it was written (ms since the epoch). */
  at?: number;
}

/** A consumer of a queue, on one connection. */
export interface MemoryConsumer {
  connection: MemoryConnection;
  onDelivery: (delivery: Delivery) => void;
  prefetch: number;
  unacked: number;
  /** Reply consumers take messages without acknowledgement. */
  autoAck: boolean;
  /** Streams only: the offset of the next message it reads. */
  next?: number;
}

/** A queue: its messages in order, and its consumers in turn. */
export interface MemoryQueue {
  name: string;
  options: QueueOptions;
  entries: Entry[];
  consumers: MemoryConsumer[];
  nextConsumer: number;
  /** Set for reply and exclusive queues: deleted with the connection that opened them. */
  owner?: MemoryConnection;
  /** Streams only: the offset of `entries[0]`; reading leaves the entries in place. */
  base?: number;
}

/** An exchange and the queues bound to it. */
export interface MemoryExchange {
  type: ExchangeType;
  options: ExchangeOptions;
  /** Bound queues, by name, with their routing keys. */
  bound: Map<string, Set<string>>;
}

/** The broker's side of a connection: its queues and exchanges, shared by every connection. */
export interface MemoryQueues {
  /** Declares `name`, or checks an existing one; `owned` queues die with `requester`. */
  declare(
    name: string,
    options: QueueOptions,
    requester: MemoryConnection,
    owned?: boolean,
  ): MemoryQueue;
  /** Refuses a connection other than the owner of an exclusive queue. */
  checkAccess(queue: MemoryQueue, connection: MemoryConnection | undefined, action: string): void;
  queue(name: string): MemoryQueue | undefined;
  delete(name: string): void;
  info(queue: MemoryQueue): QueueInfo;
  declareExchange(name: string, type: ExchangeType, options: ExchangeOptions): boolean;
  deleteExchange(name: string): void;
  bind(queue: string, exchange: string, routingKey: string, action: string): void;
  /** The queues a message published to `exchange` with `routingKey` goes to. */
  route(exchange: string, routingKey: string, action: string): string[];
  /** Routes a message to a queue; false when the queue is full and refused it. */
  enqueue(
    name: string,
    message: Message,
    route?: { exchange: string; routingKey: string },
  ): boolean;
  /** Puts an unsettled entry back, or dead-letters it; `failed` counts toward the delivery limit. */
  requeue(queue: MemoryQueue, entry: Entry, failed: boolean): void;
  deadLetter(queue: MemoryQueue, entry: Entry, reason: string): void;
  /** Hands queued messages to consumers with room. */
  pump(queue: MemoryQueue): void;
  /** Called when consumers of `queue` went away. */
  consumersLeft(queue: MemoryQueue): void;
  /**
   * Forgets a connection that ended, and the queues it owned; what it held
   * unsettled (`returned`, latest first) goes back as failed deliveries.
   */
  forget(connection: MemoryConnection, returned?: readonly Returned[]): void;
}

/** A delivery a lost connection held unsettled, going back to its queue. */
export interface Returned {
  queue: MemoryQueue;
  entry: Entry;
}

interface Unacked {
  queue: MemoryQueue;
  entry: Entry;
  consumer?: MemoryConsumer;
}

/** @internal One client's view of an in-process broker. */
export class MemoryConnection implements Broker {
  readonly closed: Promise<Error | undefined>;
  readonly user: string;
  readonly #broker: MemoryQueues;
  readonly #unacked = new Map<number, Unacked>();
  #resolveClosed!: (error: Error | undefined) => void;
  #isClosed = false;
  #nextTag = 1;
  #replying = false;

  constructor(broker: MemoryQueues, user: string) {
    this.#broker = broker;
    this.user = user;
    this.closed = new Promise((resolve) => this.#resolveClosed = resolve);
  }

  #ensureOpen(action: string): void {
    if (this.#isClosed) {
      throw new BrokerUnavailableError(`Cannot ${action} as the connection is closed`);
    }
  }

  // The methods are async so that, as with a network broker, every failure
  // arrives as a rejection, never as a synchronous throw.

  async declareQueue(name: string, options: QueueOptions = {}): Promise<QueueInfo> {
    this.#ensureOpen(`declare queue '${name}'`);
    return await this.#broker.info(this.#broker.declare(name, options, this));
  }

  async inspectQueue(name: string): Promise<QueueInfo | null> {
    this.#ensureOpen(`inspect queue '${name}'`);
    const queue = this.#broker.queue(name);
    if (queue) this.#broker.checkAccess(queue, this, `inspect queue '${name}'`);
    return await (queue ? this.#broker.info(queue) : null);
  }

  async deleteQueue(name: string): Promise<void> {
    this.#ensureOpen(`delete queue '${name}'`);
    await this.#broker.delete(name);
  }

  #stamp(message: Message, action: string): Message {
    const { userId } = message.properties;
    if (userId !== undefined && userId !== this.user) {
      throw new TypeError(
        `Cannot ${action} with user_id '${userId}' as this connection's user is '${this.user}': leave user_id out, it is set for you`,
      );
    }
    return { body: message.body, properties: { ...message.properties, userId: this.user } };
  }

  async publish(queue: string, message: Message): Promise<void> {
    const action = `publish to '${queue}'`;
    this.#ensureOpen(action);
    const { copies, message: stamped } = withoutBcc(this.#stamp(message, action));
    let accepted = true;
    for (const name of [queue, ...copies]) {
      // As RabbitMQ does, the queues with room take it, and a full one fails the confirm.
      accepted = await this.#broker.enqueue(name, stamped, { exchange: "", routingKey: queue }) &&
        accepted;
    }
    if (!accepted) throw refused(action, queue);
  }

  async declareExchange(
    name: string,
    type: ExchangeType,
    options: ExchangeOptions = {},
  ): Promise<boolean> {
    this.#ensureOpen(`declare exchange '${name}'`);
    return await this.#broker.declareExchange(name, type, options);
  }

  async deleteExchange(name: string): Promise<void> {
    this.#ensureOpen(`delete exchange '${name}'`);
    await this.#broker.deleteExchange(name);
  }

  async bindQueue(queue: string, exchange: string, routingKey = queue): Promise<void> {
    const action = `bind queue '${queue}' to exchange '${exchange}'`;
    this.#ensureOpen(action);
    const target = this.#broker.queue(queue);
    if (!target) {
      throw new TypeError(`Cannot ${action} as the queue does not exist: declare it first`);
    }
    this.#broker.checkAccess(target, this, action);
    await this.#broker.bind(queue, exchange, routingKey, action);
  }

  async publishToExchange(exchange: string, message: Message, routingKey = ""): Promise<void> {
    const action = `publish to exchange '${exchange}'`;
    this.#ensureOpen(action);
    const stamped = this.#stamp(message, action);
    let accepted = true;
    for (const queue of this.#broker.route(exchange, routingKey, action)) {
      // As RabbitMQ does, the queues with room take it, and a full one fails the confirm.
      accepted = await this.#broker.enqueue(queue, stamped, { exchange, routingKey }) && accepted;
    }
    if (!accepted) throw refused(action, exchange);
  }

  async consume(
    name: string,
    onDelivery: (delivery: Delivery) => void,
    options: ConsumeOptions,
  ): Promise<Consumer> {
    this.#ensureOpen(`consume '${name}'`);
    const queue = this.#broker.queue(name);
    if (!queue) {
      throw new TypeError(`Cannot consume '${name}' as the queue does not exist: declare it first`);
    }
    this.#broker.checkAccess(queue, this, `consume '${name}'`);
    const next = queue.options.type === "stream" ? streamStart(queue, options) : undefined;
    return await this.#subscribe(queue, onDelivery, options.prefetch, false, next);
  }

  #subscribe(
    queue: MemoryQueue,
    onDelivery: (delivery: Delivery) => void,
    prefetch: number,
    autoAck: boolean,
    next?: number,
  ): Consumer {
    const consumer: MemoryConsumer = {
      connection: this,
      onDelivery,
      prefetch,
      unacked: 0,
      autoAck,
      next,
    };
    queue.consumers.push(consumer);
    this.#broker.pump(queue);
    return {
      cancel: () => {
        const before = queue.consumers.length;
        queue.consumers = queue.consumers.filter((c) => c !== consumer);
        if (queue.consumers.length !== before) this.#broker.consumersLeft(queue);
        return Promise.resolve();
      },
    };
  }

  async get(name: string): Promise<Delivery | null> {
    this.#ensureOpen(`get from '${name}'`);
    const queue = this.#broker.queue(name);
    if (queue) this.#broker.checkAccess(queue, this, `get from '${name}'`);
    const entry = queue?.entries.shift();
    if (!queue || !entry) return null;
    const tag = this.#nextTag++;
    this.#unacked.set(tag, { queue, entry });
    return await this.#toDelivery(queue, entry, tag);
  }

  ack(delivery: Delivery): void {
    this.#settle(delivery.tag);
  }

  nack(delivery: Delivery, requeue: boolean): void {
    const unacked = this.#settle(delivery.tag);
    if (!unacked) return;
    // As RabbitMQ 4.3 counts: a return that is not a failure is not a delivery.
    if (requeue) this.#broker.requeue(unacked.queue, unacked.entry, false);
    else this.#broker.deadLetter(unacked.queue, unacked.entry, "rejected");
  }

  reject(delivery: Delivery): void {
    const unacked = this.#settle(delivery.tag);
    if (unacked) this.#broker.requeue(unacked.queue, unacked.entry, true);
  }

  #settle(tag: number): Unacked | undefined {
    const unacked = this.#unacked.get(tag);
    if (!unacked || this.#isClosed) return undefined;
    this.#unacked.delete(tag);
    if (unacked.consumer) {
      unacked.consumer.unacked--;
      this.#broker.pump(unacked.queue);
    }
    return unacked;
  }

  async openReplyQueue(onMessage: (message: Message) => void): Promise<string> {
    this.#ensureOpen("open a reply queue");
    if (this.#replying) {
      throw new TypeError(
        "Cannot open a second reply queue on one connection: share the first, or open another connection",
      );
    }
    this.#replying = true;
    // Named as RabbitMQ names Direct Reply-to in the requests a worker receives.
    const name = `amq.rabbitmq.reply-to.${crypto.randomUUID().replaceAll("-", "")}`;
    const queue = this.#broker.declare(name, { durable: false }, this, true);
    await this.#subscribe(queue, onMessage, Infinity, true);
    return name;
  }

  /** @internal Called by the broker to hand over one message. */
  deliver(queue: MemoryQueue, entry: Entry, consumer: MemoryConsumer): void {
    const tag = this.#nextTag++;
    // A stream keeps what it delivers: acknowledging it changes nothing.
    if (!consumer.autoAck && consumer.next === undefined) {
      consumer.unacked++;
      this.#unacked.set(tag, { queue, entry, consumer });
    }
    const delivery = this.#toDelivery(queue, entry, tag);
    queueMicrotask(() => {
      if (!this.#isClosed) consumer.onDelivery(delivery);
    });
  }

  #toDelivery(queue: MemoryQueue, entry: Entry, tag: number): Delivery {
    let { properties } = entry.message;
    if (queue.options.type === "quorum" && entry.deliveries > 0) {
      properties = {
        ...properties,
        headers: { ...properties.headers, "x-delivery-count": entry.deliveries },
      };
    }
    return {
      body: entry.message.body,
      properties,
      queue: queue.name,
      exchange: entry.exchange,
      routingKey: entry.routingKey,
      redelivered: entry.redelivered,
      tag,
    };
  }

  /** @internal Ends the connection with an error, as a network failure would. */
  drop(error: Error | undefined): void {
    if (this.#isClosed) return;
    this.#isClosed = true;
    const returned = [...this.#unacked.values()].reverse();
    this.#unacked.clear();
    // A consumer that went away failed its deliveries, on every RabbitMQ version.
    this.#broker.forget(this, returned);
    this.#resolveClosed(error);
  }

  close(): Promise<void> {
    this.drop(undefined);
    return Promise.resolve();
  }
}

/**
 * RabbitMQ's sender-selected distribution: the queues a `BCC` header names
 * get a copy too, and no copy carries the header.
 */
function withoutBcc(message: Message): { copies: string[]; message: Message } {
  const headers = message.properties.headers;
  const bcc = headers?.BCC;
  if (bcc === undefined) return { copies: [], message };
  const { BCC: _, ...rest } = headers!;
  const copies = Array.isArray(bcc) ? bcc.filter((name) => typeof name === "string") : [];
  return { copies, message: { ...message, properties: { ...message.properties, headers: rest } } };
}

/** The offset a new consumer of the stream `queue` starts at. */
function streamStart(queue: MemoryQueue, options: ConsumeOptions): number {
  const base = queue.base ?? 0;
  const offset = options.offset ?? "next";
  if (offset === "first") return base;
  if (offset === "next") return base + queue.entries.length;
  // As RabbitMQ keeps it: in whole seconds.
  const since = Math.floor(offset.sinceMs / 1000) * 1000;
  const index = queue.entries.findIndex((entry) => (entry.at ?? 0) >= since);
  return base + (index === -1 ? queue.entries.length : index);
}

function refused(action: string, target: string): PublishRefusedError {
  return new PublishRefusedError(
    `Cannot ${action} as the broker refused it (a full queue that refuses more): make room, or send it elsewhere`,
    target,
  );
}
