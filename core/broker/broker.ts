/**
 * The small slice of a message broker that workers and the dispatcher use,
 * and what an adapter is given to open one. Two implementations keep the
 * same behaviour, checked by one conformance suite: `AmqpBroker` (RabbitMQ,
 * `amqp/`) and `MemoryBroker` (in-process, `memory/`: the embedded default
 * and unit tests). `connect.ts` picks one by the URL's scheme.
 *
 * @module
 */

import type { Message } from "../contract/message.ts";

/** How a queue is declared. Every field must match on each declaration. */
export interface QueueOptions {
  /**
   * Survives a broker restart. Function queues are always durable.
   * @default {true}
   */
  durable?: boolean;
  /** Messages older than this leave the queue (to `deadLetterQueue`, if set). */
  messageTtlMs?: number;
  /** Expired or rejected messages go to this queue through the default exchange. */
  deadLetterQueue?: string;
  /** The queue is deleted after being unused (no consumer, no redeclaration) this long. */
  expiresMs?: number;
  /**
   * Quorum queues only: a message delivered this many times and never
   * settled (its consumer died each time) is dead-lettered to
   * `deadLetterQueue`; RabbitMQ counts the deliveries. Declared as
   * `x-delivery-limit` (one less, as RabbitMQ counts redeliveries).
   */
  deliveryLimit?: number;
  /**
   * `quorum` replicates the queue across a broker cluster. `stream` is an
   * append-only log (RabbitMQ's stream queue): every consumer reads every
   * message from the offset it asks for, and acknowledging removes nothing;
   * it keeps messages for `maxAgeMs` and `maxBytes` (it must be durable).
   * @default {"classic"}
   */
  type?: "classic" | "quorum" | "stream";
  /** Streams only: messages older than this are dropped (a whole segment at a time). */
  maxAgeMs?: number;
  /** Streams only: the oldest segments are dropped beyond this many bytes. */
  maxBytes?: number;
  /** Streams only: the size of a segment, the unit in which old messages are dropped. */
  segmentBytes?: number;
  /**
   * Only the connection that declared the queue may use it, and the queue is
   * deleted when that connection closes. Another connection's declaration fails.
   * @default {false}
   */
  exclusive?: boolean;
  /**
   * The queue is deleted when its last consumer is cancelled (once it had one).
   * @default {false}
   */
  autoDelete?: boolean;
  /**
   * Most messages the queue holds; once full, the broker refuses what is
   * published to it ({@linkcode PublishRefusedError}), as RabbitMQ's
   * `x-max-length` with `x-overflow: reject-publish` does.
   */
  maxLength?: number;
  /**
   * Only one consumer gets messages at a time: the earliest still
   * subscribed; when it goes (cancelled, or its connection lost), the next
   * one takes over, with what the first held unsettled. RabbitMQ's
   * `x-single-active-consumer`; the scheduler replicas elect the one that
   * fires with it.
   * @default {false}
   */
  singleActiveConsumer?: boolean;
}

/**
 * Kinds of exchange: `fanout` gives every bound queue a copy of each message
 * (the worker control channel); `direct` routes by routing key (the route
 * Celery clients publish to); `topic` routes by pattern (`order.*`, `order.#`:
 * the events that trigger functions).
 */
export type ExchangeType = "fanout" | "direct" | "topic";

/** Options for {@linkcode Broker.publishToExchange}. */
export interface PublishToExchangeOptions {
  /**
   * Publish on a channel of its own: a publish the broker's topic
   * permissions refuse (which closes the channel it came on) then rejects
   * with a {@linkcode PublishForbiddenError} and leaves the connection and
   * its consumers as they are.
   * @default {false}
   */
  isolated?: boolean;
}

/** How an exchange is declared. Every field must match on each declaration. */
export interface ExchangeOptions {
  /**
   * Survives a broker restart.
   * @default {true}
   */
  durable?: boolean;
}

/** A queue's depth and consumers, as the broker reports them. */
export interface QueueInfo {
  name: string;
  messages: number;
  consumers: number;
}

/** A message taken from a queue; settle it with `ack` or `nack`. */
export interface Delivery extends Message {
  /** The queue it came from. */
  queue: string;
  /** The exchange it was published to: `""` for the default exchange. */
  exchange: string;
  /** The routing key it was published with. */
  routingKey: string;
  /** True when an earlier delivery of it was never acknowledged. */
  redelivered: boolean;
  /** Identifies the delivery to the broker instance that made it. */
  tag: number;
}

/**
 * Where a consumer of a stream starts: its first message kept, only what
 * comes next, or the first message written at or after `sinceMs` (ms since
 * the epoch, in whole seconds as RabbitMQ keeps it).
 */
export type StreamOffset = "first" | "next" | { sinceMs: number };

/** Options for {@linkcode Broker.consume}. */
export interface ConsumeOptions {
  /** Most unacknowledged deliveries this consumer holds at once; 0 for no limit, as in AMQP. */
  prefetch: number;
  /** For a stream: where to start reading. @default {"next"} */
  offset?: StreamOffset;
  /**
   * For a stream: called when the broker stops this consumer on its own
   * (the nodes of the stream's replicas went away). Without it, the
   * connection ends, so that its owner reconnects.
   */
  onLost?: (reason: string) => void;
}

/** A running consumer. */
export interface Consumer {
  /** Stops deliveries; those already made stay with the caller to settle. */
  cancel(): Promise<void>;
}

/** The operations the product needs from a broker. */
export interface Broker {
  /**
   * The broker user this connection authenticated as. Every message it
   * publishes carries it as `user_id`, which RabbitMQ verifies, so that
   * receivers know who sent it.
   */
  readonly user: string;
  /** Creates the queue if it does not exist; returns its depth and consumers. */
  declareQueue(name: string, options?: QueueOptions): Promise<QueueInfo>;
  /** Reports a queue without creating it; `null` when it does not exist. */
  inspectQueue(name: string): Promise<QueueInfo | null>;
  /** Deletes a queue and its messages. */
  deleteQueue(name: string): Promise<void>;
  /**
   * Sends a message to a queue through the default exchange. Resolves once
   * the broker has taken responsibility for it (a publisher confirm); a
   * message to a queue that does not exist is dropped, and confirmed.
   * Rejects with a {@linkcode PublishRefusedError} when the broker refused
   * it (a negative confirm), else with a `BrokerUnavailableError`.
   */
  publish(queue: string, message: Message): Promise<void>;
  /**
   * Creates the exchange if it does not exist, and leaves an existing one as
   * it is: a user who may use an exchange but not configure it (a worker on
   * the control exchange) can still declare it. Resolves with whether it
   * created it.
   */
  declareExchange(name: string, type: ExchangeType, options?: ExchangeOptions): Promise<boolean>;
  /** Deletes an exchange and its bindings; the bound queues stay. */
  deleteExchange(name: string): Promise<void>;
  /**
   * Routes the exchange's messages to the queue as well (for a direct
   * exchange, those with routing key `routingKey`, default the queue's name).
   * Both must exist, else a `TypeError`; binding twice is the same as once.
   */
  bindQueue(queue: string, exchange: string, routingKey?: string): Promise<void>;
  /**
   * Sends a message through an exchange; each bound queue that matches gets
   * a copy, and with none it is dropped. Resolves once the broker confirmed
   * it; rejects with a `TypeError` when the exchange does not exist, and,
   * `isolated`, with a {@linkcode PublishForbiddenError} when this user may
   * not publish that routing key there.
   */
  publishToExchange(
    exchange: string,
    message: Message,
    routingKey?: string,
    options?: PublishToExchangeOptions,
  ): Promise<void>;
  /** Delivers the queue's messages to `onDelivery` until cancelled. */
  consume(
    queue: string,
    onDelivery: (delivery: Delivery) => void,
    options: ConsumeOptions,
  ): Promise<Consumer>;
  /** Takes one message, if any, without a consumer. */
  get(queue: string): Promise<Delivery | null>;
  /** Confirms a delivery is done: the broker forgets the message. */
  ack(delivery: Delivery): void;
  /**
   * Gives a delivery back: to the queue when `requeue` (AMQP `basic.nack`),
   * else to its dead-letter queue or away. A quorum queue counts a requeue
   * toward its delivery limit before RabbitMQ 4.3, and not from 4.3 on.
   */
  nack(delivery: Delivery, requeue: boolean): void;
  /**
   * Returns a delivery to its queue as one that failed (AMQP `basic.reject`
   * with requeue): a quorum queue counts it toward its delivery limit on
   * every RabbitMQ version, as it counts a consumer that died.
   */
  reject(delivery: Delivery): void;
  /**
   * Starts receiving replies; returns the address to put in `reply_to`.
   * Replies for a closed broker are lost, as with RabbitMQ's Direct Reply-to.
   */
  openReplyQueue(onMessage: (message: Message) => void): Promise<string>;
  /** Settles when the connection ends: with the cause, or `undefined` after `close()`. */
  readonly closed: Promise<Error | undefined>;
  /** Ends the connection. Unacknowledged deliveries return to their queues. */
  close(): Promise<void>;
}

/** Options for {@linkcode BrokerUnavailableError}. */
export interface BrokerUnavailableErrorOptions extends ErrorOptions {
  /** Nothing answered at the address (as opposed to a broker that refused). */
  unreachable?: boolean;
}

/** The broker is unreachable, refused the credentials, or went away. */
export class BrokerUnavailableError extends Error {
  /** True when nothing answered at the address at all. */
  readonly unreachable: boolean;

  /**
   * @param message What failed, with the address (password masked) and a fix.
   * @param options The underlying error, and whether anything answered.
   */
  constructor(message: string, options?: BrokerUnavailableErrorOptions) {
    super(message, options);
    this.name = "BrokerUnavailableError";
    this.unreachable = options?.unreachable ?? false;
  }
}

/**
 * The broker received a message and refused it (a negative publisher
 * confirm): its queue is full and refuses more (`reject-publish`), or it
 * could not store it. The connection is fine; publishing the same message
 * again fails the same way until the queue has room.
 */
export class PublishRefusedError extends Error {
  /** The queue (or exchange) published to. */
  readonly target: string;

  /**
   * @param message What was refused, and what to do.
   * @param target The queue or exchange published to.
   */
  constructor(message: string, target: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "PublishRefusedError";
    this.target = target;
  }
}

/**
 * The broker's permissions refused a publish: this broker user may not
 * publish that routing key to that exchange (RabbitMQ's topic permissions).
 * Sending it again fails the same way until an operator grants it.
 */
export class PublishForbiddenError extends Error {
  /** The exchange published to. */
  readonly exchange: string;
  /** The routing key refused. */
  readonly routingKey: string;

  /**
   * @param message What was refused, and what to grant.
   * @param details The exchange and the routing key.
   */
  constructor(
    message: string,
    details: { exchange: string; routingKey: string },
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "PublishForbiddenError";
    this.exchange = details.exchange;
    this.routingKey = details.routingKey;
  }
}

/**
 * A queue exists with other arguments than a declaration asks for, such as
 * another queue type or delivery limit: redeclaring cannot change them.
 * Restarting does not help either, so a worker stops on it.
 */
export class QueueMismatchError extends TypeError {
  /** The queue. */
  readonly queue: string;
  /** The argument that differs, such as `x-queue-type`. */
  readonly argument: string;
  /** What the declaration asked for, and what the queue has, as RabbitMQ words them. */
  readonly wanted: string;
  readonly current: string;

  /**
   * @param message What differs and how to migrate.
   * @param details The queue, the argument and both values.
   */
  constructor(
    message: string,
    details: { queue: string; argument: string; wanted: string; current: string },
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "QueueMismatchError";
    this.queue = details.queue;
    this.argument = details.argument;
    this.wanted = details.wanted;
    this.current = details.current;
  }
}

/** A PEM file that was read, and the setting that named it. */
export interface TlsFile {
  pem: string;
  setting: string;
  path: string;
}

/** TLS material for an encrypted connection (`amqps://`). */
export interface BrokerTls {
  ca?: TlsFile;
  cert?: TlsFile;
  key?: TlsFile;
}

/**
 * How a caller names its TLS settings in messages, for the settings it was
 * not given: `AMQP_CA_FILE` for a worker, `--ca-file or AMQP_CA_FILE` for a tool.
 */
export interface TlsSettingNames {
  caFile: string;
  certFile: string;
  keyFile: string;
}

/** What an adapter's connector is given, besides the URL. */
export interface ConnectorOptions {
  /**
   * Give up on a node that has not completed the handshake within this time.
   * @default {5000}
   */
  timeoutMs?: number;
  /** Shown in the broker's management UI, to tell connections apart. */
  connectionName?: string;
  /**
   * Seconds between heartbeats; a broker silent for two of them is gone.
   * @default {10}
   */
  heartbeatSeconds?: number;
  /** Certificates for an encrypted URL: the CA, and a client certificate and key. */
  tls?: BrokerTls;
  /** How the caller names its TLS settings, for the fixes in error messages. */
  settingNames?: TlsSettingNames;
}

/**
 * Opens a connection to the broker at `url` (one adapter's scheme; several
 * nodes of one cluster separated by commas). Fails with a
 * {@linkcode BrokerUnavailableError}, `unreachable` when nothing answered.
 */
export type Connector = (url: string, options: ConnectorOptions) => Promise<Broker>;
