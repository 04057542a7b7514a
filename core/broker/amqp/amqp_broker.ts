/**
 * {@linkcode Broker} on RabbitMQ through amqplib (imported only here, in
 * `connect_amqp.ts`, `write_batching.ts` and `isolated_publisher.ts`). One
 * connection, one confirm channel for publishing, consuming and Direct
 * Reply-to, a side channel for declarations and checks, whose failures (a
 * missing queue, mismatched arguments) would otherwise close the main
 * channel, and, on first use, a channel for publishes the broker's
 * permissions may refuse (events). Open one with
 * `connectAmqp`.
 *
 * @module
 */

import type amqp from "amqplib";
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
  PublishRefusedError,
  type PublishToExchangeOptions,
  type QueueInfo,
  type QueueOptions,
} from "../broker.ts";
import type { Message, MessageProperties } from "../../contract/message.ts";
import { DIRECT_REPLY_TO } from "../../contract/names.ts";
import { maskUrl, redactPassword } from "../url.ts";
import { coalesceWrites, PublishGate } from "./write_batching.ts";
import { closedError, describeAmqpFailure } from "./amqp_failure.ts";
import { queueArguments } from "./queue_arguments.ts";
import { IsolatedPublisher } from "./isolated_publisher.ts";

/** The error amqplib settles a publish with when the broker sent `basic.nack` for it. */
const NACKED = "message nacked";

function fromAmqpMessage(message: ConsumeMessage | amqp.GetMessage): Message {
  const p = message.properties;
  const properties: MessageProperties = {};
  if (p.contentType !== undefined) properties.contentType = p.contentType;
  if (p.contentEncoding !== undefined) properties.contentEncoding = p.contentEncoding;
  if (p.correlationId !== undefined) properties.correlationId = p.correlationId;
  if (p.replyTo !== undefined) properties.replyTo = p.replyTo;
  if (p.messageId !== undefined) properties.messageId = p.messageId;
  if (p.type !== undefined) properties.type = p.type;
  if (p.userId !== undefined) properties.userId = p.userId;
  if (p.expiration !== undefined) properties.expiration = String(p.expiration);
  if (p.timestamp !== undefined) properties.timestamp = p.timestamp;
  if (p.deliveryMode === 2) properties.persistent = true;
  if (p.headers !== undefined && Object.keys(p.headers).length > 0) {
    properties.headers = p.headers;
  }
  return { body: message.content, properties };
}

/**
 * The `x-stream-offset` consume argument of `offset`: a timestamp travels as
 * AMQP's timestamp type (whole seconds), which amqplib writes for this shape.
 */
function streamOffsetArgument(offset: ConsumeOptions["offset"]): unknown {
  if (offset === undefined || typeof offset === "string") return offset;
  return { "!": "timestamp", value: Math.floor(offset.sinceMs / 1000) };
}

/** A connection to RabbitMQ; see the module documentation. */
export class AmqpBroker implements Broker {
  readonly closed: Promise<Error | undefined>;
  readonly user: string;
  /** Whether socket writes are batched (see `coalesceWrites`); for a test of the pinned amqplib. */
  readonly writesCoalesced: boolean;
  readonly #connection: ChannelModel;
  readonly #channel: ConfirmChannel;
  readonly #url: string;
  #side: Promise<Channel> | undefined;
  #closing = false;
  #isClosed = false;
  /**
   * Deliveries not yet settled, by tag, in delivery order (tags grow), and
   * whether `ack` was called for them: acknowledgements are sent in batches.
   */
  readonly #outstanding = new Map<number, boolean>();
  /** Deliveries of stream consumers, each settled on its own channel. */
  readonly #streamDeliveries = new WeakMap<Delivery, Channel>();
  /** The channels of stream consumers, closed before the connection. */
  readonly #streamChannels = new Set<Channel>();
  #flushScheduled = false;
  readonly #gate: PublishGate;
  #replying = false;
  /** Exchanges this connection saw exist. */
  readonly #knownExchanges = new Set<string>();

  /**
   * @param connection An open amqplib connection.
   * @param channel A confirm channel on it.
   * @param url Where it goes, for messages (printed masked).
   * @param user The user it authenticated as.
   */
  constructor(connection: ChannelModel, channel: ConfirmChannel, url: string, user: string) {
    this.writesCoalesced = coalesceWrites(connection);
    this.user = user;
    this.#connection = connection;
    this.#channel = channel;
    this.#gate = new PublishGate(channel);
    this.#url = url;
    this.closed = new Promise((resolve) => {
      connection.on("error", () => {
        // The cause arrives again with "close"; without a listener it would throw.
      });
      connection.on("close", (error?: Error) => {
        this.#isClosed = true;
        // The broker returns unsettled deliveries to their queues itself.
        this.#outstanding.clear();
        this.#gate.failAll("the connection closed");
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
    throw describeAmqpFailure(action, error, this.#url, this.#isClosed);
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
  ): Promise<boolean> {
    // An exchange that exists is only checked: declaring it again needs the
    // configure permission, which a least-privilege user has not got.
    try {
      await (await this.#sideChannel()).checkExchange(name);
      // Publishing to it needs no check of its own now (task events).
      this.#knownExchanges.add(name);
      return false;
    } catch (error) {
      if (!/NOT.FOUND|404/.test(String((error as Error)?.message))) {
        this.#fail(`check exchange '${name}'`, error);
      }
    }
    try {
      const channel = await this.#sideChannel();
      await channel.assertExchange(name, type, { durable: options.durable ?? true });
      this.#knownExchanges.add(name);
      return true;
    } catch (error) {
      this.#fail(`declare exchange '${name}'`, error);
    }
  }

  async deleteExchange(name: string): Promise<void> {
    this.#knownExchanges.delete(name);
    try {
      const channel = await this.#sideChannel();
      await channel.deleteExchange(name);
    } catch (error) {
      this.#fail(`delete exchange '${name}'`, error);
    }
  }

  async bindQueue(queue: string, exchange: string, routingKey = queue): Promise<void> {
    try {
      const channel = await this.#sideChannel();
      await channel.bindQueue(queue, exchange, routingKey);
    } catch (error) {
      this.#fail(`bind queue '${queue}' to exchange '${exchange}'`, error);
    }
  }

  async publishToExchange(
    exchange: string,
    message: Message,
    routingKey = "",
    options: PublishToExchangeOptions = {},
  ): Promise<void> {
    // Publishing to a missing exchange would close the main channel, and
    // with it every consumer: check on the side channel first, once per
    // exchange and connection (task events publish to one many times).
    if (!this.#knownExchanges.has(exchange)) {
      try {
        const channel = await this.#sideChannel();
        await channel.checkExchange(exchange);
        this.#knownExchanges.add(exchange);
      } catch (error) {
        this.#fail(`publish to exchange '${exchange}'`, error);
      }
    }
    if (options.isolated) return await this.#publishIsolated(exchange, routingKey, message);
    await this.#publish(exchange, routingKey, message, `publish to exchange '${exchange}'`);
  }

  /** Publishes on the isolated channel (`isolated_publisher.ts`). */
  async #publishIsolated(exchange: string, routingKey: string, message: Message): Promise<void> {
    const action = `publish to exchange '${exchange}' with routing key '${routingKey}'`;
    if (this.#isClosed) throw closedError(action, this.#url);
    const { userId } = message.properties;
    if (userId !== undefined && userId !== this.user) {
      throw new TypeError(
        `Cannot ${action} with user_id '${userId}' as this connection's user is '${this.user}': leave user_id out, it is set for you`,
      );
    }
    const body = Buffer.from(message.body.buffer, message.body.byteOffset, message.body.byteLength);
    const options = { ...message.properties, userId: this.user } as Options.Publish;
    this.#isolated ??= new IsolatedPublisher(this.#connection, this.user);
    await this.#isolated.publish(exchange, routingKey, body, options);
  }

  #isolated: IsolatedPublisher | undefined;

  publish(queue: string, message: Message): Promise<void> {
    return this.#publish("", queue, message, `publish to '${queue}'`);
  }

  #publish(
    exchange: string,
    routingKey: string,
    message: Message,
    action: string,
  ): Promise<void> {
    if (this.#isClosed) return Promise.reject(closedError(action, this.#url));
    const body = Buffer.from(message.body.buffer, message.body.byteOffset, message.body.byteLength);
    const { userId } = message.properties;
    if (userId !== undefined && userId !== this.user) {
      // RabbitMQ would close the channel, and with it every consumer.
      return Promise.reject(
        new TypeError(
          `Cannot ${action} with user_id '${userId}' as this connection's user is '${this.user}': leave user_id out, it is set for you`,
        ),
      );
    }
    // amqplib reads the same property names, and leaves out undefined ones.
    const options = { ...message.properties, userId: this.user } as Options.Publish;
    return new Promise<void>((resolve, reject) => {
      // One closure per publish: at thousands a second, what is allocated
      // here is most of what the garbage collector has to do.
      const settle = (error?: unknown) => {
        if (!error) return resolve();
        if ((error as Error)?.message === NACKED) {
          return reject(
            new PublishRefusedError(
              `Cannot ${action} as the broker refused it (a full queue that refuses more, or no room to store it): make room, or send it elsewhere`,
              exchange === "" ? routingKey : exchange,
              { cause: error },
            ),
          );
        }
        reject(
          new BrokerUnavailableError(
            `Cannot ${action} as the broker did not confirm it: ${error}`,
            { cause: error },
          ),
        );
      };
      this.#gate.publish(exchange, routingKey, body, options, settle);
    });
  }

  async consume(
    queue: string,
    onDelivery: (delivery: Delivery) => void,
    options: ConsumeOptions,
  ): Promise<Consumer> {
    if (options.offset !== undefined) return this.#consumeStream(queue, onDelivery, options);
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

  /**
   * A stream is read on a channel of its own: RabbitMQ refuses the consume
   * (closing its channel) on a cluster node that holds no replica of the
   * stream, and the main channel, whose loss ends the connection, must
   * survive that. Once reading, a lost stream channel ends the connection
   * as the main one does, so that its owner reconnects.
   */
  async #consumeStream(
    queue: string,
    onDelivery: (delivery: Delivery) => void,
    options: ConsumeOptions,
  ): Promise<Consumer> {
    let channel: Channel | undefined;
    let cancelled = false;
    try {
      channel = await this.#connection.createChannel();
      const own = channel;
      own.on("error", () => {});
      await own.prefetch(options.prefetch, false);
      const { consumerTag } = await own.consume(queue, (message) => {
        if (message === null) {
          this.#connection.close().catch(() => {});
          return;
        }
        const delivery = this.#toDelivery(queue, message);
        this.#streamDeliveries.set(delivery, own);
        onDelivery(delivery);
      }, { arguments: { "x-stream-offset": streamOffsetArgument(options.offset) } });
      this.#streamChannels.add(own);
      own.on("close", () => {
        this.#streamChannels.delete(own);
        if (cancelled || this.#closing) return;
        if (options.onLost) options.onLost(`the channel reading '${queue}' closed`);
        else this.#connection.close().catch(() => {});
      });
      return {
        cancel: async () => {
          cancelled = true;
          if (this.#isClosed) return;
          await own.cancel(consumerTag).catch(() => {});
          await own.close().catch(() => {});
        },
      };
    } catch (error) {
      cancelled = true;
      await channel?.close().catch(() => {});
      this.#fail(`consume '${queue}'`, error);
    }
  }

  #toDelivery(queue: string, message: ConsumeMessage | amqp.GetMessage): Delivery {
    return {
      ...fromAmqpMessage(message),
      queue,
      exchange: message.fields.exchange,
      routingKey: message.fields.routingKey,
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
    const stream = this.#streamDeliveries.get(delivery);
    if (stream) {
      this.#streamDeliveries.delete(delivery);
      if (!this.#isClosed) {
        try {
          stream.ack(this.#settlement(delivery.tag));
        } catch {
          // Its channel closed: the broker settles what it had delivered.
        }
      }
      return;
    }
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
    // A stream keeps every message: settling one on its channel is all there is.
    if (this.#streamDeliveries.has(delivery)) return this.ack(delivery);
    if (this.#isClosed || !this.#outstanding.delete(delivery.tag)) return;
    this.#channel.nack(this.#settlement(delivery.tag), false, requeue);
  }

  reject(delivery: Delivery): void {
    if (this.#streamDeliveries.has(delivery)) return this.ack(delivery);
    if (this.#isClosed || !this.#outstanding.delete(delivery.tag)) return;
    this.#channel.reject(this.#settlement(delivery.tag), true);
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
    await Promise.all([...this.#streamChannels].map((channel) => channel.close().catch(() => {})));
    await this.#channel.close().catch(() => {});
    await this.#connection.close().catch(() => {});
  }
}
