/**
 * Two ways the AMQP adapter keeps the cost of many small messages down:
 * corking amqplib's socket while it flushes a burst of frames, and a gate
 * that holds publishes, in order, while a full socket buffer drains.
 *
 * @module
 */

import type { Buffer } from "node:buffer";
import type { ChannelModel, ConfirmChannel, Options } from "amqplib";
import { Fifo } from "../../fifo.ts";

/**
 * amqplib hands the socket each frame of a burst as its own write, and each
 * write is a system call: a third of a busy worker's time. Corking the
 * socket while amqplib flushes a burst turns it into one write. This reaches
 * into amqplib's internals (pinned in deno.json), so it checks their shape
 * and returns whether it took effect; a test fails when it stops doing so.
 */
export function coalesceWrites(model: ChannelModel): boolean {
  const muxer = (model as unknown as { connection?: { muxer?: Record<string, unknown> } })
    .connection?.muxer;
  const socket = muxer?.out as { cork?: () => void; uncork?: () => void } | undefined;
  const flush = muxer?._readIncoming;
  if (!muxer || typeof flush !== "function" || !socket?.cork || !socket.uncork) return false;
  muxer._readIncoming = function (this: unknown) {
    socket.cork!();
    try {
      return flush.call(this);
    } finally {
      socket.uncork!();
    }
  };
  return true;
}

/** A publish waiting for a full socket buffer to drain. */
interface WaitingPublish {
  exchange: string;
  routingKey: string;
  body: Buffer;
  options: Options.Publish;
  settle: (error?: unknown) => void;
}

/**
 * Publishes on a confirm channel in order: straight through while the
 * socket takes them, held in a FIFO while its buffer is full. One listener
 * releases them all once it drains, instead of each waking the others,
 * which costs quadratic time with thousands in flight.
 */
export class PublishGate {
  readonly #channel: ConfirmChannel;
  readonly #waiting = new Fifo<WaitingPublish>();
  #held = false;

  /** @param channel Where publishes go. */
  constructor(channel: ConfirmChannel) {
    this.#channel = channel;
  }

  /**
   * Publishes, or queues the publish while the buffer drains; `settle` gets
   * the broker's confirm, or the error. Positional, so that a publish that
   * goes straight through allocates nothing here.
   */
  publish(
    exchange: string,
    routingKey: string,
    body: Buffer,
    options: Options.Publish,
    settle: (error?: unknown) => void,
  ): void {
    if (this.#held) this.#waiting.push({ exchange, routingKey, body, options, settle });
    else this.#send(exchange, routingKey, body, options, settle);
  }

  /** Fails every publish still waiting with `reason`. */
  failAll(reason: string): void {
    while (this.#waiting.length > 0) this.#waiting.shift()!.settle(reason);
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
    if (!written) this.#hold();
  }

  #hold(): void {
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
}
