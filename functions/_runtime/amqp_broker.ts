/**
 * {@linkcode Broker} on RabbitMQ through amqplib: the only module that
 * imports it. One connection, one confirm channel for publishing, consuming
 * and Direct Reply-to, and a side channel for declarations and checks, whose
 * failures (a missing queue, mismatched arguments) would otherwise close the
 * main channel.
 *
 * @module
 */

import amqp from "amqplib";
import type { Channel, ChannelModel, ConfirmChannel, ConsumeMessage, Options } from "amqplib";
import { Buffer } from "node:buffer";
import { setImmediate } from "node:timers";
import {
  type Broker,
  BrokerUnavailableError,
  type ConsumeOptions,
  type Consumer,
  type Delivery,
  type ExchangeOptions,
  type ExchangeType,
  maskUrl,
  type QueueInfo,
  type QueueOptions,
  redactPassword,
} from "./broker.ts";
import type { Message, MessageProperties } from "./contract.ts";
import { describeConnectError } from "./describe_connect_error.ts";
import { checkAmqpUrl } from "./resolve_amqp_target.ts";
import type { AmqpSettingNames, AmqpTls } from "./resolve_amqp_target.ts";

/** RabbitMQ's pseudo-queue for replies without a reply queue of one's own. */
export const DIRECT_REPLY_TO = "amq.rabbitmq.reply-to";

/** Options for {@linkcode connectAmqp}. */
export interface ConnectAmqpOptions {
  /**
   * Give up when the broker has not completed the handshake within this time.
   * @default {5000}
   */
  timeoutMs?: number;
  /** Shown in RabbitMQ's management UI, to tell connections apart. */
  connectionName?: string;
  /**
   * Seconds between heartbeats; a broker silent for two of them is gone.
   * @default {10}
   */
  heartbeatSeconds?: number;
  /**
   * Certificates for an `amqps://` URL: the CA that signs the broker's
   * certificate (else the system's CAs) and a client certificate and key for
   * brokers that ask for one.
   */
  tls?: AmqpTls;
  /**
   * How the caller names its TLS settings, for the fixes in error messages.
   * @default {WORKER_SETTING_NAMES}
   */
  settingNames?: AmqpSettingNames;
}

/**
 * Connects to RabbitMQ. Fails with a {@linkcode BrokerUnavailableError} that
 * says what to fix, and never takes longer than `timeoutMs` to do so; a URL
 * that is not an AMQP URL fails at once with a `TypeError`.
 */
export async function connectAmqp(url: string, options: ConnectAmqpOptions = {}): Promise<Broker> {
  checkAmqpUrl(url, "the broker URL");
  const timeoutMs = options.timeoutMs ?? 5000;
  const { tls } = options;
  const describe = (error: unknown) =>
    describeConnectError(error, url, { timeoutMs, tls, names: options.settingNames });
  const connectOptions = {
    // Nagle's algorithm delays small frames by tens of milliseconds.
    noDelay: true,
    timeout: timeoutMs,
    clientProperties: { connection_name: options.connectionName ?? "deno-task-system" },
    // The credentials travel apart from the URL, decoded here: amqplib would
    // decode a percent-encoded password as Latin-1.
    ...credentialsOf(url),
    ...(tls?.ca && { ca: [tls.ca.pem] }),
    ...(tls?.cert && { cert: tls.cert.pem }),
    ...(tls?.key && { key: tls.key.pem }),
  };
  const target = withoutCredentials(withHeartbeat(url, options.heartbeatSeconds ?? 10));
  let timer: ReturnType<typeof setTimeout> | undefined;
  const attempt = amqp.connect(target, connectOptions);
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error("timed out")), timeoutMs);
  });
  let connection: ChannelModel;
  try {
    connection = await Promise.race([attempt, timeout]);
  } catch (error) {
    // A connection that completes after the timeout must not linger.
    attempt.then((late) => late.close()).catch(() => {});
    const failure = describe(error);
    throw new BrokerUnavailableError(failure.message, {
      cause: error,
      unreachable: failure.unreachable,
    });
  } finally {
    clearTimeout(timer);
  }
  try {
    const channel = await connection.createConfirmChannel();
    return new AmqpBroker(connection, channel, url);
  } catch (error) {
    await connection.close().catch(() => {});
    throw new BrokerUnavailableError(describe(error).message, { cause: error });
  }
}

function credentialsOf(url: string): { credentials?: ReturnType<typeof amqp.credentials.plain> } {
  const { username, password } = new URL(url);
  if (!username && !password) return {};
  return {
    credentials: amqp.credentials.plain(decodeURIComponent(username), decodeURIComponent(password)),
  };
}

function withoutCredentials(url: string): string {
  const parsed = new URL(url);
  parsed.username = "";
  parsed.password = "";
  return parsed.toString();
}

function withHeartbeat(url: string, seconds: number): string {
  const parsed = new URL(url);
  if (!parsed.searchParams.has("heartbeat")) parsed.searchParams.set("heartbeat", String(seconds));
  return parsed.toString();
}

/** What a NOT_FOUND error names, such as "exchange 'tasks.control'". */
function notFound(text: string): string {
  const match = text.match(/no (queue|exchange) '([^']*)'/i);
  return match ? `${match[1].toLowerCase()} '${match[2]}'` : "it";
}

function queueArguments(options: QueueOptions): Record<string, unknown> {
  const args: Record<string, unknown> = {};
  if (options.messageTtlMs !== undefined) args["x-message-ttl"] = options.messageTtlMs;
  if (options.deadLetterQueue !== undefined) {
    args["x-dead-letter-exchange"] = "";
    args["x-dead-letter-routing-key"] = options.deadLetterQueue;
  }
  if (options.expiresMs !== undefined) args["x-expires"] = options.expiresMs;
  if (options.type === "quorum") args["x-queue-type"] = "quorum";
  return args;
}

function fromAmqpMessage(message: ConsumeMessage | amqp.GetMessage): Message {
  const p = message.properties;
  const properties: MessageProperties = {};
  if (p.contentType !== undefined) properties.contentType = p.contentType;
  if (p.correlationId !== undefined) properties.correlationId = p.correlationId;
  if (p.replyTo !== undefined) properties.replyTo = p.replyTo;
  if (p.messageId !== undefined) properties.messageId = p.messageId;
  if (p.type !== undefined) properties.type = p.type;
  if (p.timestamp !== undefined) properties.timestamp = p.timestamp;
  if (p.deliveryMode === 2) properties.persistent = true;
  if (p.headers !== undefined && Object.keys(p.headers).length > 0) {
    properties.headers = p.headers;
  }
  return { body: message.content, properties };
}

/**
 * amqplib hands the socket each frame of a burst as its own write, and each
 * write is a system call: a third of a busy worker's time. Corking the
 * socket while amqplib flushes a burst turns it into one write. This reaches
 * into amqplib's internals, so it does nothing unless they look as expected.
 */
function coalesceWrites(model: ChannelModel): void {
  const muxer = (model as unknown as { connection?: { muxer?: Record<string, unknown> } })
    .connection?.muxer;
  const socket = muxer?.out as { cork?: () => void; uncork?: () => void } | undefined;
  const flush = muxer?._readIncoming;
  if (!muxer || typeof flush !== "function" || !socket?.cork || !socket.uncork) return;
  muxer._readIncoming = function (this: unknown) {
    socket.cork!();
    try {
      return flush.call(this);
    } finally {
      socket.uncork!();
    }
  };
}

/** A publish waiting for a full socket buffer to drain. */
interface WaitingPublish {
  exchange: string;
  routingKey: string;
  body: Buffer;
  options: Options.Publish;
  settle: (error?: unknown) => void;
}

/** A FIFO whose `shift()` takes constant time, unlike an array's. */
class Queue<T> {
  #items: (T | undefined)[] = [];
  #head = 0;

  get length(): number {
    return this.#items.length - this.#head;
  }

  push(item: T): void {
    this.#items.push(item);
  }

  shift(): T | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const item = this.#items[this.#head];
    this.#items[this.#head++] = undefined;
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }
}

/** @internal Use {@linkcode connectAmqp}. */
class AmqpBroker implements Broker {
  readonly closed: Promise<Error | undefined>;
  readonly #connection: ChannelModel;
  readonly #channel: ConfirmChannel;
  readonly #url: string;
  #side: Promise<Channel> | undefined;
  #closing = false;
  #isClosed = false;
  #held = false;
  /**
   * Deliveries not yet settled, by tag, in delivery order (tags grow), and
   * whether `ack` was called for them: acknowledgements are sent in batches.
   */
  readonly #outstanding = new Map<number, boolean>();
  #flushScheduled = false;
  readonly #waiting = new Queue<WaitingPublish>();
  #replying = false;

  constructor(connection: ChannelModel, channel: ConfirmChannel, url: string) {
    coalesceWrites(connection);
    this.#connection = connection;
    this.#channel = channel;
    this.#url = url;
    this.closed = new Promise((resolve) => {
      connection.on("error", () => {
        // The cause arrives again with "close"; without a listener it would throw.
      });
      connection.on("close", (error?: Error) => {
        this.#isClosed = true;
        // The broker returns unsettled deliveries to their queues itself.
        this.#outstanding.clear();
        while (this.#waiting.length > 0) this.#waiting.shift()!.settle("the connection closed");
        resolve(
          this.#closing ? undefined : new BrokerUnavailableError(
            `Lost the connection to the broker at ${maskUrl(url)}: ${
              redactPassword(error?.message ?? "it closed the connection", url)
            }`,
            { cause: error },
          ),
        );
      });
    });
    channel.on("error", () => {});
    // The main channel only closes on a protocol error; without it nothing
    // works, so end the connection and let the owner reconnect.
    channel.on("close", () => {
      if (!this.#closing) connection.close().catch(() => {});
    });
  }

  #sideChannel(): Promise<Channel> {
    if (!this.#side) {
      const side = this.#connection.createChannel();
      this.#side = side;
      side.then((channel) => {
        channel.on("error", () => {});
        channel.on("close", () => {
          if (this.#side === side) this.#side = undefined;
        });
      }).catch(() => {
        if (this.#side === side) this.#side = undefined;
      });
    }
    return this.#side;
  }

  #fail(action: string, error: unknown): never {
    const text = redactPassword(error instanceof Error ? error.message : String(error), this.#url);
    if (/PRECONDITION.FAILED.*inequivalent/i.test(text)) {
      throw new TypeError(
        `Cannot ${action} as it exists with other settings (${text}): delete it or declare it with its settings`,
        { cause: error },
      );
    }
    if (/RESOURCE.LOCKED/i.test(text)) {
      throw new TypeError(
        `Cannot ${action} as another connection holds it exclusively (${text}): use a queue of your own`,
        { cause: error },
      );
    }
    if (/NOT.FOUND/i.test(text)) {
      throw new TypeError(
        `Cannot ${action} as ${notFound(text)} does not exist: declare it first`,
        {
          cause: error,
        },
      );
    }
    if (/ACCESS.REFUSED/i.test(text)) {
      throw new BrokerUnavailableError(
        `Cannot ${action} as the broker refused access: ${text}: grant the user permissions on it`,
        { cause: error },
      );
    }
    if (this.#isClosed) {
      throw new BrokerUnavailableError(
        `Cannot ${action} as the connection to ${maskUrl(this.#url)} is closed`,
        { cause: error },
      );
    }
    throw new BrokerUnavailableError(`Cannot ${action}: ${text}`, { cause: error });
  }

  async declareQueue(name: string, options: QueueOptions = {}): Promise<QueueInfo> {
    try {
      const channel = await this.#sideChannel();
      const ok = await channel.assertQueue(name, {
        durable: options.durable ?? true,
        exclusive: options.exclusive ?? false,
        autoDelete: options.autoDelete ?? false,
        arguments: queueArguments(options),
      });
      return { name, messages: ok.messageCount, consumers: ok.consumerCount };
    } catch (error) {
      this.#fail(`declare queue '${name}'`, error);
    }
  }

  async inspectQueue(name: string): Promise<QueueInfo | null> {
    try {
      const channel = await this.#sideChannel();
      const ok = await channel.checkQueue(name);
      return { name, messages: ok.messageCount, consumers: ok.consumerCount };
    } catch (error) {
      if (/NOT.FOUND|404/.test(String((error as Error)?.message))) return null;
      this.#fail(`inspect queue '${name}'`, error);
    }
  }

  async deleteQueue(name: string): Promise<void> {
    try {
      const channel = await this.#sideChannel();
      await channel.deleteQueue(name);
    } catch (error) {
      this.#fail(`delete queue '${name}'`, error);
    }
  }

  async declareExchange(
    name: string,
    type: ExchangeType,
    options: ExchangeOptions = {},
  ): Promise<void> {
    // An exchange that exists is only checked: declaring it again needs the
    // configure permission, which a least-privilege user has not got.
    try {
      await (await this.#sideChannel()).checkExchange(name);
      return;
    } catch (error) {
      if (!/NOT.FOUND|404/.test(String((error as Error)?.message))) {
        this.#fail(`check exchange '${name}'`, error);
      }
    }
    try {
      const channel = await this.#sideChannel();
      await channel.assertExchange(name, type, { durable: options.durable ?? true });
    } catch (error) {
      this.#fail(`declare exchange '${name}'`, error);
    }
  }

  async deleteExchange(name: string): Promise<void> {
    try {
      const channel = await this.#sideChannel();
      await channel.deleteExchange(name);
    } catch (error) {
      this.#fail(`delete exchange '${name}'`, error);
    }
  }

  async bindQueue(queue: string, exchange: string): Promise<void> {
    try {
      const channel = await this.#sideChannel();
      await channel.bindQueue(queue, exchange, "");
    } catch (error) {
      this.#fail(`bind queue '${queue}' to exchange '${exchange}'`, error);
    }
  }

  async publishToExchange(exchange: string, message: Message): Promise<void> {
    // Publishing to a missing exchange would close the main channel, and
    // with it every consumer: check on the side channel first.
    try {
      const channel = await this.#sideChannel();
      await channel.checkExchange(exchange);
    } catch (error) {
      this.#fail(`publish to exchange '${exchange}'`, error);
    }
    await this.#publish(exchange, "", message, `publish to exchange '${exchange}'`);
  }

  publish(queue: string, message: Message): Promise<void> {
    return this.#publish("", queue, message, `publish to '${queue}'`);
  }

  #publish(
    exchange: string,
    routingKey: string,
    message: Message,
    action: string,
  ): Promise<void> {
    if (this.#isClosed) {
      return Promise.reject(
        new BrokerUnavailableError(
          `Cannot ${action} as the connection to ${maskUrl(this.#url)} is closed`,
        ),
      );
    }
    const body = Buffer.from(message.body.buffer, message.body.byteOffset, message.body.byteLength);
    // amqplib reads the same property names, and leaves out undefined ones.
    const options = message.properties as Options.Publish;
    return new Promise<void>((resolve, reject) => {
      // One closure per publish: at thousands a second, what is allocated
      // here is most of what the garbage collector has to do.
      const settle = (error?: unknown) => {
        if (!error) return resolve();
        reject(
          new BrokerUnavailableError(
            `Cannot ${action} as the broker did not confirm it: ${error}`,
            { cause: error },
          ),
        );
      };
      if (this.#held) this.#waiting.push({ exchange, routingKey, body, options, settle });
      else this.#send(exchange, routingKey, body, options, settle);
    });
  }

  #send(
    exchange: string,
    routingKey: string,
    body: Buffer,
    options: Options.Publish,
    settle: (error?: unknown) => void,
  ): void {
    let written: boolean;
    try {
      written = this.#channel.publish(exchange, routingKey, body, options, settle);
    } catch (error) {
      settle(error ?? "publish failed");
      return;
    }
    if (!written) this.#holdPublishes();
  }

  /**
   * The socket buffer is full: later publishes wait, in order, until it
   * drains. One listener releases them all, instead of each waking the
   * others, which costs quadratic time with thousands in flight.
   */
  #holdPublishes(): void {
    if (this.#held) return;
    this.#held = true;
    this.#channel.once("drain", () => {
      this.#held = false;
      while (!this.#held && this.#waiting.length > 0) {
        const { exchange, routingKey, body, options, settle } = this.#waiting.shift()!;
        this.#send(exchange, routingKey, body, options, settle);
      }
    });
  }

  async consume(
    queue: string,
    onDelivery: (delivery: Delivery) => void,
    options: ConsumeOptions,
  ): Promise<Consumer> {
    try {
      await this.#channel.prefetch(options.prefetch, false);
      const { consumerTag } = await this.#channel.consume(queue, (message) => {
        if (message === null) {
          // The broker cancelled us (the queue was deleted): start over.
          this.#connection.close().catch(() => {});
          return;
        }
        this.#outstanding.set(message.fields.deliveryTag, false);
        onDelivery(this.#toDelivery(queue, message));
      });
      return {
        cancel: async () => {
          if (this.#isClosed) return;
          await this.#channel.cancel(consumerTag).catch(() => {});
        },
      };
    } catch (error) {
      this.#fail(`consume '${queue}'`, error);
    }
  }

  #toDelivery(queue: string, message: ConsumeMessage | amqp.GetMessage): Delivery {
    return {
      ...fromAmqpMessage(message),
      queue,
      redelivered: message.fields.redelivered,
      tag: message.fields.deliveryTag,
    };
  }

  async get(queue: string): Promise<Delivery | null> {
    try {
      const message = await this.#channel.get(queue);
      if (message === false) return null;
      this.#outstanding.set(message.fields.deliveryTag, false);
      return this.#toDelivery(queue, message);
    } catch (error) {
      this.#fail(`get from '${queue}'`, error);
    }
  }

  #settlement(tag: number): ConsumeMessage {
    return { fields: { deliveryTag: tag } } as ConsumeMessage;
  }

  ack(delivery: Delivery): void {
    // A delivery of a closed channel is settled by the broker: it requeues it.
    if (this.#isClosed || !this.#outstanding.has(delivery.tag)) return;
    this.#outstanding.set(delivery.tag, true);
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(() => this.#flushAcks());
    }
  }

  /**
   * Sends the acknowledgements gathered since the last flush: one frame with
   * `multiple` for the oldest deliveries, all done, then one frame for each
   * done delivery behind a delivery still running. A busy worker so sends a
   * frame or two per burst instead of one per task, and a slow task never
   * holds back the acknowledgement (and the prefetch room) of others.
   */
  #flushAcks(): void {
    this.#flushScheduled = false;
    if (this.#isClosed) return;
    let upTo = 0;
    let contiguous = true;
    for (const [tag, done] of this.#outstanding) {
      if (!done) {
        contiguous = false;
        continue;
      }
      this.#outstanding.delete(tag);
      if (contiguous) upTo = tag;
      else this.#channel.ack(this.#settlement(tag));
    }
    if (upTo > 0) this.#channel.ack(this.#settlement(upTo), true);
  }

  nack(delivery: Delivery, requeue: boolean): void {
    if (this.#isClosed || !this.#outstanding.delete(delivery.tag)) return;
    this.#channel.nack(this.#settlement(delivery.tag), false, requeue);
  }

  async openReplyQueue(onMessage: (message: Message) => void): Promise<string> {
    // RabbitMQ allows one Direct Reply-to consumer per channel, and a second
    // attempt would close the channel.
    if (this.#replying) {
      throw new TypeError(
        "Cannot open a second reply queue on one connection: share the first, or open another connection",
      );
    }
    this.#replying = true;
    try {
      await this.#channel.consume(DIRECT_REPLY_TO, (message) => {
        if (message) onMessage(fromAmqpMessage(message));
      }, { noAck: true });
      return DIRECT_REPLY_TO;
    } catch (error) {
      this.#fail("open a reply queue", error);
    }
  }

  async close(): Promise<void> {
    if (this.#isClosed) return;
    this.#closing = true;
    this.#flushAcks();
    // Close the channel first: its close frame follows the acknowledgements
    // still buffered on it, whereas a connection close can overtake them and
    // make the broker deliver acknowledged messages again.
    await this.#channel.close().catch(() => {});
    await this.#connection.close().catch(() => {});
  }
}
