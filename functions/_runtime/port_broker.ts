/**
 * A {@linkcode Broker} carried over a `MessagePort`, so a function isolated in
 * a Web Worker uses a broker connection owned by the thread that started it.
 * {@linkcode serveBrokerOverPort} runs on the owning side;
 * {@linkcode PortBroker} is what the Web Worker sees.
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
  type QueueInfo,
  type QueueOptions,
} from "./broker.ts";
import type { Message } from "./contract.ts";

/** The part of `MessagePort` both sides use. */
export interface Port {
  postMessage(message: unknown): void;
  addEventListener(type: "message", listener: (event: MessageEvent) => void): void;
  removeEventListener(type: "message", listener: (event: MessageEvent) => void): void;
  start?(): void;
  close?(): void;
}

type Operation =
  | "declareQueue"
  | "inspectQueue"
  | "deleteQueue"
  | "publish"
  | "declareExchange"
  | "deleteExchange"
  | "bindQueue"
  | "publishToExchange"
  | "consume"
  | "cancel"
  | "get"
  | "ack"
  | "nack"
  | "openReplyQueue"
  | "close";

type ToOwner = { kind: "call"; id: number; op: Operation; args: unknown[] };

type ToWorker =
  | { kind: "result"; id: number; ok: true; value: unknown }
  | { kind: "result"; id: number; ok: false; name: string; message: string }
  | { kind: "delivery"; stream: number; delivery: Delivery }
  | { kind: "message"; stream: number; message: Message }
  | { kind: "closed"; message?: string };

function rebuildError(name: string, message: string): Error {
  if (name === "BrokerUnavailableError") return new BrokerUnavailableError(message);
  if (name === "TypeError") return new TypeError(message);
  if (name === "RangeError") return new RangeError(message);
  const error = new Error(message);
  error.name = name;
  return error;
}

/**
 * Answers a {@linkcode PortBroker}'s calls with `broker`, until either side
 * closes. Returns a function that stops serving and closes `broker`.
 */
export function serveBrokerOverPort(port: Port, broker: Broker): () => Promise<void> {
  const consumers = new Map<number, Consumer>();
  const deliveries = new Map<number, Delivery>();
  const send = (message: ToWorker) => port.postMessage(message);

  const run = async (op: Operation, args: unknown[]): Promise<unknown> => {
    switch (op) {
      case "declareQueue":
        return await broker.declareQueue(args[0] as string, args[1] as QueueOptions);
      case "inspectQueue":
        return await broker.inspectQueue(args[0] as string);
      case "deleteQueue":
        return await broker.deleteQueue(args[0] as string);
      case "publish":
        return await broker.publish(args[0] as string, args[1] as Message);
      case "declareExchange":
        return await broker.declareExchange(
          args[0] as string,
          args[1] as ExchangeType,
          args[2] as ExchangeOptions,
        );
      case "deleteExchange":
        return await broker.deleteExchange(args[0] as string);
      case "bindQueue":
        return await broker.bindQueue(args[0] as string, args[1] as string);
      case "publishToExchange":
        return await broker.publishToExchange(args[0] as string, args[1] as Message);
      case "consume": {
        const stream = args[2] as number;
        const consumer = await broker.consume(args[0] as string, (delivery) => {
          deliveries.set(delivery.tag, delivery);
          send({ kind: "delivery", stream, delivery });
        }, args[1] as ConsumeOptions);
        consumers.set(stream, consumer);
        return undefined;
      }
      case "cancel":
        await consumers.get(args[0] as number)?.cancel();
        consumers.delete(args[0] as number);
        return undefined;
      case "get": {
        const delivery = await broker.get(args[0] as string);
        if (delivery) deliveries.set(delivery.tag, delivery);
        return delivery;
      }
      case "ack":
      case "nack": {
        const delivery = deliveries.get(args[0] as number);
        if (!delivery) return undefined;
        deliveries.delete(delivery.tag);
        if (op === "ack") broker.ack(delivery);
        else broker.nack(delivery, args[1] as boolean);
        return undefined;
      }
      case "openReplyQueue": {
        const stream = args[0] as number;
        return await broker.openReplyQueue((message) => send({ kind: "message", stream, message }));
      }
      case "close":
        await broker.close();
        return undefined;
    }
  };

  const onMessage = (event: MessageEvent) => {
    const call = event.data as ToOwner;
    if (call?.kind !== "call") return;
    run(call.op, call.args).then(
      (value) => send({ kind: "result", id: call.id, ok: true, value }),
      (error: Error) =>
        send({ kind: "result", id: call.id, ok: false, name: error.name, message: error.message }),
    );
  };
  port.addEventListener("message", onMessage);
  port.start?.();
  broker.closed.then((error) => send({ kind: "closed", message: error?.message }));
  return async () => {
    port.removeEventListener("message", onMessage);
    await broker.close();
  };
}

/** The Web Worker's side: a {@linkcode Broker} whose calls cross a port. */
export class PortBroker implements Broker {
  readonly closed: Promise<Error | undefined>;
  readonly #port: Port;
  readonly #pending = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: Error) => void }
  >();
  readonly #streams = new Map<number, (item: Delivery | Message) => void>();
  #next = 1;
  #isClosed = false;
  #resolveClosed!: (error: Error | undefined) => void;

  /** @param port The port whose other end is served by {@linkcode serveBrokerOverPort}. */
  constructor(port: Port) {
    this.#port = port;
    this.closed = new Promise((resolve) => this.#resolveClosed = resolve);
    port.addEventListener(
      "message",
      (event: MessageEvent) => this.#receive(event.data as ToWorker),
    );
    port.start?.();
  }

  #receive(message: ToWorker): void {
    switch (message.kind) {
      case "result": {
        const pending = this.#pending.get(message.id);
        this.#pending.delete(message.id);
        if (!pending) return;
        if (message.ok) pending.resolve(message.value);
        else pending.reject(rebuildError(message.name, message.message));
        return;
      }
      case "delivery":
        this.#streams.get(message.stream)?.(message.delivery);
        return;
      case "message":
        this.#streams.get(message.stream)?.(message.message);
        return;
      case "closed":
        this.#shut(
          message.message === undefined ? undefined : new BrokerUnavailableError(message.message),
        );
        return;
    }
  }

  #shut(error: Error | undefined): void {
    if (this.#isClosed) return;
    this.#isClosed = true;
    for (const pending of this.#pending.values()) {
      pending.reject(
        new BrokerUnavailableError("Cannot finish the call as the broker connection closed"),
      );
    }
    this.#pending.clear();
    this.#resolveClosed(error);
  }

  #call<T>(op: Operation, args: unknown[]): Promise<T> {
    if (this.#isClosed) {
      return Promise.reject(
        new BrokerUnavailableError(`Cannot ${op} as the broker connection is closed`),
      );
    }
    const id = this.#next++;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.#port.postMessage({ kind: "call", id, op, args } satisfies ToOwner);
    });
  }

  #notify(op: Operation, args: unknown[]): void {
    if (this.#isClosed) return;
    this.#port.postMessage({ kind: "call", id: 0, op, args } satisfies ToOwner);
  }

  declareQueue(name: string, options?: QueueOptions): Promise<QueueInfo> {
    return this.#call("declareQueue", [name, options]);
  }

  inspectQueue(name: string): Promise<QueueInfo | null> {
    return this.#call("inspectQueue", [name]);
  }

  deleteQueue(name: string): Promise<void> {
    return this.#call("deleteQueue", [name]);
  }

  publish(queue: string, message: Message): Promise<void> {
    return this.#call("publish", [queue, message]);
  }

  declareExchange(name: string, type: ExchangeType, options?: ExchangeOptions): Promise<void> {
    return this.#call("declareExchange", [name, type, options]);
  }

  deleteExchange(name: string): Promise<void> {
    return this.#call("deleteExchange", [name]);
  }

  bindQueue(queue: string, exchange: string): Promise<void> {
    return this.#call("bindQueue", [queue, exchange]);
  }

  publishToExchange(exchange: string, message: Message): Promise<void> {
    return this.#call("publishToExchange", [exchange, message]);
  }

  async consume(
    queue: string,
    onDelivery: (delivery: Delivery) => void,
    options: ConsumeOptions,
  ): Promise<Consumer> {
    const stream = this.#next++;
    this.#streams.set(stream, onDelivery as (item: Delivery | Message) => void);
    await this.#call("consume", [queue, options, stream]);
    return {
      cancel: async () => {
        await this.#call("cancel", [stream]).catch(() => {});
        this.#streams.delete(stream);
      },
    };
  }

  get(queue: string): Promise<Delivery | null> {
    return this.#call("get", [queue]);
  }

  ack(delivery: Delivery): void {
    this.#notify("ack", [delivery.tag]);
  }

  nack(delivery: Delivery, requeue: boolean): void {
    this.#notify("nack", [delivery.tag, requeue]);
  }

  openReplyQueue(onMessage: (message: Message) => void): Promise<string> {
    const stream = this.#next++;
    this.#streams.set(stream, onMessage as (item: Delivery | Message) => void);
    return this.#call("openReplyQueue", [stream]);
  }

  async close(): Promise<void> {
    if (this.#isClosed) return;
    await this.#call("close", []).catch(() => {});
    this.#shut(undefined);
  }
}
