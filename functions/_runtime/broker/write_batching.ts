/**
 * Two ways the AMQP adapter keeps the cost of many small messages down:
 * corking amqplib's socket while it flushes a burst of frames, and a FIFO
 * for publishes that wait for a full socket buffer to drain.
 *
 * @module
 */

import type { ChannelModel } from "amqplib";

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

/** A FIFO whose `shift()` takes constant time, unlike an array's. */
export class Fifo<T> {
  #items: (T | undefined)[] = [];
  #head = 0;

  /** Items waiting. */
  get length(): number {
    return this.#items.length - this.#head;
  }

  /** Adds an item at the end. */
  push(item: T): void {
    this.#items.push(item);
  }

  /** Takes the first item, if any. */
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
