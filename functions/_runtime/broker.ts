/**
 * The small slice of a message broker that workers and the dispatcher use.
 * Two implementations keep the same behaviour, checked by one conformance
 * suite: {@linkcode AmqpBroker} (RabbitMQ) and {@linkcode MemoryBroker}
 * (in-process, for the embedded default and unit tests).
 *
 * @module
 */

import type { Message } from "./contract.ts";

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
   * `quorum` replicates the queue across a broker cluster.
   * @default {"classic"}
   */
  type?: "classic" | "quorum";
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
}

/**
 * Kinds of exchange. Only `fanout`, which gives every bound queue a copy of
 * each message, as the worker control channel needs.
 */
export type ExchangeType = "fanout";

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
  /** True when an earlier delivery of it was never acknowledged. */
  redelivered: boolean;
  /** Identifies the delivery to the broker instance that made it. */
  tag: number;
}

/** Options for {@linkcode Broker.consume}. */
export interface ConsumeOptions {
  /** Most unacknowledged deliveries this consumer holds at once. */
  prefetch: number;
}

/** A running consumer. */
export interface Consumer {
  /** Stops deliveries; those already made stay with the caller to settle. */
  cancel(): Promise<void>;
}

/** The operations the product needs from a broker. */
export interface Broker {
  /** Creates the queue if it does not exist; returns its depth and consumers. */
  declareQueue(name: string, options?: QueueOptions): Promise<QueueInfo>;
  /** Reports a queue without creating it; `null` when it does not exist. */
  inspectQueue(name: string): Promise<QueueInfo | null>;
  /** Deletes a queue and its messages. */
  deleteQueue(name: string): Promise<void>;
  /**
   * Sends a message to a queue through the default exchange. Resolves once
   * the broker has taken responsibility for it (a publisher confirm).
   */
  publish(queue: string, message: Message): Promise<void>;
  /**
   * Creates the exchange if it does not exist, and leaves an existing one as
   * it is: a user who may use an exchange but not configure it (a worker on
   * the control exchange) can still declare it.
   */
  declareExchange(name: string, type: ExchangeType, options?: ExchangeOptions): Promise<void>;
  /** Deletes an exchange and its bindings; the bound queues stay. */
  deleteExchange(name: string): Promise<void>;
  /**
   * Routes the exchange's messages to the queue as well. Both must exist,
   * else a `TypeError`; binding twice is the same as once.
   */
  bindQueue(queue: string, exchange: string): Promise<void>;
  /**
   * Sends a message through an exchange; each bound queue gets a copy, and
   * with none bound it is dropped. Resolves once the broker confirmed it;
   * rejects with a `TypeError` when the exchange does not exist.
   */
  publishToExchange(exchange: string, message: Message): Promise<void>;
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
  /** Gives a delivery back: to the queue when `requeue`, else to its dead-letter queue or away. */
  nack(delivery: Delivery, requeue: boolean): void;
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

/** Hides the password of a broker URL so it is safe to print or log. */
export function maskUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    return parsed.toString().replace(/\/$/, "");
  } catch {
    return url.replace(/\/\/([^:/@]*):[^@/]*@/, "//$1:***@");
  }
}

/**
 * Replaces the password of `url` with `***` wherever it appears in `text`, in
 * its URL-encoded and its decoded form, so that an error message from a
 * library that quotes its input is safe to print. Passwords shorter than 4
 * characters are left alone: replacing them would garble every message.
 */
export function redactPassword(text: string, url: string): string {
  let password: string;
  try {
    password = new URL(url).password;
  } catch {
    return text;
  }
  const forms = new Set([password]);
  try {
    forms.add(decodeURIComponent(password));
  } catch {
    // Not valid percent-encoding: only the raw form can appear.
  }
  let redacted = text;
  for (const form of forms) {
    if (form.length >= 4) redacted = redacted.split(form).join("***");
  }
  return redacted;
}
