/**
 * A {@linkcode Broker} that outlives its connection: when the node it is
 * connected to goes away, it connects again (to the next node of a cluster,
 * with the workers' backoff), declares again the queues it declared, and
 * resumes its consumers and its reply queue there. A caller's calls keep
 * going through the loss of a node:
 *
 * - a publish whose confirm the lost connection never gave is sent again on
 *   the next one (at least once: the workers answer a copy of a request they
 *   already answered from their record, and the caller keeps the first
 *   reply of each task);
 * - declarations and checks are made again on the next connection;
 * - a delivery of the lost connection is settled by the broker (it delivers
 *   it again), so `ack` and `nack` of it do nothing.
 *
 * What it cannot carry over is Direct Reply-to: the replies on their way to
 * the lost connection are gone. A caller that must get every reply uses a
 * reply queue of its own (the client's `replies: "queue"`).
 *
 * `closed` settles only after `close()`, or when no node answered for
 * `giveUpMs`.
 *
 * @module
 */

import { backoffDelay, type BackoffPolicy, RECONNECT_POLICY } from "../backoff.ts";
import {
  type Broker,
  BrokerUnavailableError,
  type ConsumeOptions,
  type Consumer,
  type Delivery,
  type ExchangeOptions,
  type ExchangeType,
  type PublishToExchangeOptions,
  type QueueInfo,
  type QueueOptions,
} from "./broker.ts";
import type { Message } from "../contract/message.ts";

/** What happens to the connection, for the caller to tell its user. */
export type ConnectionEvent =
  | { kind: "lost"; error: Error }
  | { kind: "retrying"; attempt: number; delayMs: number; error: Error }
  | { kind: "reconnected"; attempts: number; downMs: number }
  | { kind: "gave-up"; error: BrokerUnavailableError };

/** Options for {@linkcode ReconnectingBroker}. */
export interface ReconnectingBrokerOptions {
  /** Opens a new connection (to any node of the cluster); called after each loss. */
  connect: () => Promise<Broker>;
  /** Told of each loss, attempt, reconnection and the giving up. */
  onEvent?: (event: ConnectionEvent) => void;
  /**
   * Stop trying after this long without a connection: `closed` settles
   * with the last error, and every operation fails with it.
   * @default {60_000}
   */
  giveUpMs?: number;
  /** @default {RECONNECT_POLICY} */
  policy?: BackoffPolicy;
  /**
   * How long an operation that failed waits to see whether its connection
   * closed (then it is made again on the next one) or not (it fails).
   * @default {500}
   */
  settleMs?: number;
}

interface Subscription {
  /** The queue consumed; none for Direct Reply-to. */
  queue?: string;
  start(broker: Broker): Promise<void>;
}

/** A message saying what went wrong with `error`. */
function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

/** See the module documentation. */
export class ReconnectingBroker implements Broker {
  readonly user: string;
  readonly closed: Promise<Error | undefined>;
  readonly #options: ReconnectingBrokerOptions;
  #current: Broker | undefined;
  /** Settles with the next connection, or rejects when the broker gave up or closed. */
  #ready: Promise<Broker>;
  #resolveReady: (broker: Broker) => void = () => {};
  #rejectReady: (error: Error) => void = () => {};
  #resolveClosed!: (error: Error | undefined) => void;
  #failure: Error | undefined;
  #closing = false;
  readonly #subscriptions = new Set<Subscription>();
  readonly #declared = new Map<string, QueueOptions>();
  readonly #origin = new WeakMap<Delivery, Broker>();

  /**
   * @param initial A connection already open.
   * @param options How to connect again, and whom to tell.
   */
  constructor(initial: Broker, options: ReconnectingBrokerOptions) {
    this.user = initial.user;
    this.#options = options;
    this.closed = new Promise((resolve) => this.#resolveClosed = resolve);
    this.#ready = Promise.resolve(initial);
    this.#adopt(initial);
  }

  #adopt(broker: Broker): void {
    this.#current = broker;
    broker.closed.then((error) => {
      if (this.#current !== broker || this.#closing) return;
      this.#current = undefined;
      this.#ready = new Promise((resolve, reject) => {
        this.#resolveReady = resolve;
        this.#rejectReady = reject;
      });
      // Operations waiting for the next connection must not count as unhandled.
      this.#ready.catch(() => {});
      this.#reconnect(error ?? new BrokerUnavailableError("The broker closed the connection"));
    });
  }

  async #reconnect(cause: Error): Promise<void> {
    const { onEvent } = this.#options;
    const policy = this.#options.policy ?? RECONNECT_POLICY;
    const giveUpAt = Date.now() + (this.#options.giveUpMs ?? 60_000);
    const lostAt = performance.now();
    onEvent?.({ kind: "lost", error: cause });
    let error = cause;
    for (let attempt = 1; !this.#closing; attempt++) {
      const delayMs = backoffDelay(attempt, policy);
      if (attempt > 1) onEvent?.({ kind: "retrying", attempt, delayMs, error });
      if (Date.now() + delayMs > giveUpAt) break;
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      if (this.#closing) return;
      let broker: Broker | undefined;
      try {
        broker = await this.#options.connect();
        for (const [name, options] of this.#declared) await broker.declareQueue(name, options);
        for (const subscription of this.#subscriptions) await subscription.start(broker);
      } catch (failure) {
        error = asError(failure);
        await broker?.close().catch(() => {});
        continue;
      }
      if (this.#closing) {
        await broker.close().catch(() => {});
        return;
      }
      this.#adopt(broker);
      this.#resolveReady(broker);
      onEvent?.({ kind: "reconnected", attempts: attempt, downMs: performance.now() - lostAt });
      return;
    }
    if (this.#closing) return;
    const failure = new BrokerUnavailableError(
      `Cannot reach the broker again after losing it (${error.message}): no node answered for ${
        this.#options.giveUpMs ?? 60_000
      } ms. Start the broker, or check the list of nodes`,
      { cause: error, unreachable: true },
    );
    this.#failure = failure;
    this.#rejectReady(failure);
    onEvent?.({ kind: "gave-up", error: failure });
    this.#resolveClosed(failure);
  }

  /** The open connection, waiting for the next one while there is none. */
  #connected(): Promise<Broker> {
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.#closing) {
      return Promise.reject(
        new BrokerUnavailableError("Cannot use the broker as this client closed its connection"),
      );
    }
    return this.#ready;
  }

  /** Whether `broker`'s connection ended within the settle time: then an operation goes again. */
  async #lost(broker: Broker): Promise<boolean> {
    if (this.#current !== broker) return true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const ended = await Promise.race([
      broker.closed.then(() => true),
      new Promise<boolean>((resolve) =>
        timer = setTimeout(resolve, this.#options.settleMs ?? 500, false)
      ),
    ]);
    clearTimeout(timer);
    return ended;
  }

  /**
   * Runs `operation` on the open connection; when that connection is lost
   * under it, runs it again on the next one. Other failures reject.
   */
  async #use<T>(operation: (broker: Broker) => Promise<T>): Promise<T> {
    while (true) {
      const broker = await this.#connected();
      try {
        return await operation(broker);
      } catch (error) {
        if (!(error instanceof BrokerUnavailableError) || this.#closing) throw error;
        if (!(await this.#lost(broker))) throw error;
      }
    }
  }

  async declareQueue(name: string, options: QueueOptions = {}): Promise<QueueInfo> {
    const info = await this.#use((broker) => broker.declareQueue(name, options));
    // Exclusive queues die with their connection; the others are declared
    // again on the next one, in case they expired while no one was there.
    if (!options.exclusive) this.#declared.set(name, options);
    return info;
  }

  inspectQueue(name: string): Promise<QueueInfo | null> {
    return this.#use((broker) => broker.inspectQueue(name));
  }

  async deleteQueue(name: string): Promise<void> {
    // As the broker cancels the consumers of a queue it deletes, so that the
    // next connection neither declares it again nor consumes what is gone
    // (a client that deletes its reply queue as it closes, as its node dies).
    this.#declared.delete(name);
    for (const subscription of this.#subscriptions) {
      if (subscription.queue === name) this.#subscriptions.delete(subscription);
    }
    await this.#use((broker) => broker.deleteQueue(name));
  }

  publish(queue: string, message: Message): Promise<void> {
    return this.#use((broker) => broker.publish(queue, message));
  }

  declareExchange(name: string, type: ExchangeType, options?: ExchangeOptions): Promise<boolean> {
    return this.#use((broker) => broker.declareExchange(name, type, options));
  }

  deleteExchange(name: string): Promise<void> {
    return this.#use((broker) => broker.deleteExchange(name));
  }

  bindQueue(queue: string, exchange: string, routingKey?: string): Promise<void> {
    return this.#use((broker) => broker.bindQueue(queue, exchange, routingKey));
  }

  publishToExchange(
    exchange: string,
    message: Message,
    routingKey?: string,
    options?: PublishToExchangeOptions,
  ): Promise<void> {
    return this.#use((broker) => broker.publishToExchange(exchange, message, routingKey, options));
  }

  async consume(
    queue: string,
    onDelivery: (delivery: Delivery) => void,
    options: ConsumeOptions,
  ): Promise<Consumer> {
    let consumer: Consumer | undefined;
    let cancelled = false;
    const subscription: Subscription = {
      queue,
      start: async (broker) => {
        consumer = await broker.consume(queue, (delivery) => {
          this.#origin.set(delivery, broker);
          onDelivery(delivery);
        }, options);
      },
    };
    await this.#use((broker) => subscription.start(broker));
    this.#subscriptions.add(subscription);
    return {
      cancel: async () => {
        if (cancelled) return;
        cancelled = true;
        this.#subscriptions.delete(subscription);
        await consumer?.cancel();
      },
    };
  }

  async get(queue: string): Promise<Delivery | null> {
    const broker = await this.#connected();
    const delivery = await broker.get(queue);
    if (delivery) this.#origin.set(delivery, broker);
    return delivery;
  }

  ack(delivery: Delivery): void {
    const origin = this.#origin.get(delivery);
    if (origin && origin === this.#current) origin.ack(delivery);
  }

  nack(delivery: Delivery, requeue: boolean): void {
    const origin = this.#origin.get(delivery);
    if (origin && origin === this.#current) origin.nack(delivery, requeue);
  }

  reject(delivery: Delivery): void {
    const origin = this.#origin.get(delivery);
    if (origin && origin === this.#current) origin.reject(delivery);
  }

  /**
   * Opens Direct Reply-to on each connection in turn. Its address must be
   * the same on every connection, as RabbitMQ's `amq.rabbitmq.reply-to` is;
   * replies on their way to a lost connection are lost.
   */
  async openReplyQueue(onMessage: (message: Message) => void): Promise<string> {
    let address: string | undefined;
    const subscription: Subscription = {
      start: async (broker) => {
        const opened = await broker.openReplyQueue(onMessage);
        if (address !== undefined && opened !== address) {
          throw new TypeError(
            `Cannot reopen the reply queue as the broker gave another address ('${opened}', was '${address}'): use a reply queue of your own`,
          );
        }
        address = opened;
      },
    };
    await this.#use((broker) => subscription.start(broker));
    this.#subscriptions.add(subscription);
    return address!;
  }

  async close(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    const current = this.#current;
    this.#current = undefined;
    this.#rejectReady(new BrokerUnavailableError("Cannot use the broker as this client closed it"));
    await current?.close();
    this.#resolveClosed(this.#failure);
  }
}

/**
 * The line that tells the user of `event`, in the words the workers log, so
 * that a caller's output and a worker's log tell one story.
 */
export function describeConnectionEvent(event: ConnectionEvent): string {
  switch (event.kind) {
    case "lost":
      return `Lost the broker connection; reconnecting: ${event.error.message}`;
    case "retrying":
      return `Broker not reachable; retrying (attempt ${event.attempt}, in ${event.delayMs} ms): ${event.error.message}`;
    case "reconnected":
      return `Reconnected to the broker after ${
        Math.round(event.downMs)
      } ms (attempt ${event.attempts})`;
    case "gave-up":
      return event.error.message;
  }
}
