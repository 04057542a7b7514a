/**
 * A worker's record of the tasks it answered, so that a request delivered
 * again is answered again from the record instead of run again. The broker
 * delivers a request again when it never saw the acknowledgement: the
 * worker's connection (or the node it was on) died after the reply left and
 * before the ack arrived, or a caller that lost its node sent a request
 * again because its publish was never confirmed. Without the record, the
 * handler would run twice for one task.
 *
 * The record lives in the worker's process, across reconnections: a
 * request delivered again to the same process is never run twice, one
 * delivered to another replica is (at-least-once execution; the caller
 * still takes one reply per task, see docs/cluster.md). A copy is the same
 * request when it has the same task id, the same sender and the same
 * fingerprint ({@linkcode fingerprintOf}); a new request that reuses a task
 * id, and a replayed dead letter, run.
 *
 * Bounded by entries and bytes: the oldest answers are forgotten first.
 *
 * @module
 */

import { Fifo } from "../../core/fifo.ts";
import { DELIVERY_COUNT_HEADER, type Message, type TaskReply } from "../../core/contract/mod.ts";

/** What the record keeps of one answered task: enough to send its reply again. */
export interface AnsweredTask {
  reply: TaskReply;
  /** The result as JSON text, as the handler returned it (success only). */
  resultJson?: string;
}

/** Options for {@linkcode AnsweredTasks}. */
export interface AnsweredTasksOptions {
  /**
   * Most answers kept.
   * @default {50_000}
   */
  maxEntries?: number;
  /**
   * Most bytes of results (and ids) kept, counted as UTF-16 code units.
   * @default {8 MiB}
   */
  maxBytes?: number;
}

/** What {@linkcode AnsweredTasks.claim} gives: the earlier answer, or the right to run. */
export type Claim = { answer: AnsweredTask } | { release: () => void };

/** A request being run, and what a copy of it waiting for it waits on. */
interface Running {
  done?: Promise<void>;
  finish?: () => void;
}

interface Entry {
  fingerprint: string;
  answer: AnsweredTask;
  bytes: number;
}

/** The bytes an answer takes in the record, about: its result, its ids and a fixed part. */
function sizeOf(key: string, answer: AnsweredTask): number {
  return 2 * (key.length + (answer.resultJson?.length ?? 0) +
        (answer.reply.error?.message.length ?? 0)) + 512;
}

function fnv1a(bytes: Uint8Array, hash = 0x811c9dc5): number {
  for (let i = 0; i < bytes.length; i++) {
    hash ^= bytes[i];
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash;
}

/** FNV-1a over a string's UTF-16 code units: no encoding to bytes first. */
function fnv1aText(text: string, hash: number): number {
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash;
}

/**
 * A fingerprint of a request as it was published: its body and its headers,
 * save the delivery count the broker adds to each redelivery. Two
 * deliveries of one publish, or a publish sent again unchanged, share it; a
 * new request reusing a task id (another deadline), a retry (another
 * `x-attempt` and `x-sent-at`) and a replayed dead letter (`x-replayed-at`)
 * do not.
 */
export function fingerprintOf(message: Message): string {
  const headers = message.properties.headers ?? {};
  const kept = Object.keys(headers).filter((key) => key !== DELIVERY_COUNT_HEADER).sort();
  let hash = fnv1a(message.body);
  for (const key of kept) {
    // A separator no header name holds keeps ["ab","c"] apart from ["a","bc"].
    hash = fnv1aText(String(headers[key]), fnv1aText(key + "\u0000", hash));
    hash = fnv1aText("\u0000", hash);
  }
  return `${message.body.length}:${hash.toString(16)}`;
}

/** The record; see the module documentation. */
export class AnsweredTasks {
  readonly #entries = new Map<string, Entry>();
  // Oldest first. Forgetting the oldest by iterating the Map would walk
  // past every entry deleted before it, on every answer once full; an entry
  // kept again leaves its earlier place here stale, which is skipped.
  #order = new Fifo<{ key: string; entry: Entry }>();
  readonly #running = new Map<string, Running>();
  readonly #maxEntries: number;
  readonly #maxBytes: number;
  #bytes = 0;

  /** @param options Its bounds. */
  constructor(options: AnsweredTasksOptions = {}) {
    this.#maxEntries = options.maxEntries ?? 50_000;
    this.#maxBytes = options.maxBytes ?? 8 * 1024 * 1024;
  }

  /** Answers kept now. */
  get size(): number {
    return this.#entries.size;
  }

  /** The key of a task: its sender and its id. */
  static keyOf(sender: string | undefined, taskId: string): string {
    return `${sender ?? ""}\n${taskId}`;
  }

  /**
   * Claims a request: gives the answer of the same request when this
   * process gave one, else marks it as running until `release()` is called.
   * A copy claimed while another copy runs waits for that one first (the
   * only case that returns a promise), so that two copies never run at once.
   */
  claim(key: string, fingerprint: string): Claim | Promise<Claim> {
    const running = this.#running.get(key);
    if (running) {
      // Made only for a waiting copy: nearly every claim finds nothing running.
      running.done ??= new Promise<void>((resolve) => running.finish = resolve);
      return running.done.then(() => this.claim(key, fingerprint));
    }
    // From here to the end, nothing awaits: the check and the mark are one step.
    const entry = this.#entries.get(key);
    if (entry?.fingerprint === fingerprint) return { answer: entry.answer };
    const mark: Running = {};
    this.#running.set(key, mark);
    return {
      release: () => {
        if (this.#running.get(key) === mark) this.#running.delete(key);
        mark.finish?.();
      },
    };
  }

  /**
   * The answer kept for the task `taskId` from whichever sender, with that
   * sender: what a cancellation of a finished call is told. A walk over the
   * record, for the rare cancellation, not for every request.
   */
  findTask(taskId: string): { sender: string; answer: AnsweredTask } | undefined {
    const suffix = `\n${taskId}`;
    for (const [key, entry] of this.#entries) {
      if (key.endsWith(suffix)) {
        return { sender: key.slice(0, -suffix.length), answer: entry.answer };
      }
    }
    return undefined;
  }

  /** Keeps the answer of a request, forgetting the oldest beyond the bounds. */
  remember(key: string, fingerprint: string, answer: AnsweredTask): void {
    const bytes = sizeOf(key, answer);
    this.#forget(key);
    // An answer larger than the whole record is not kept: a copy of its
    // request would run again, which is what happens without the record.
    if (bytes > this.#maxBytes) return;
    const entry = { fingerprint, answer, bytes };
    this.#entries.set(key, entry);
    this.#order.push({ key, entry });
    this.#bytes += bytes;
    while (this.#entries.size > this.#maxEntries || this.#bytes > this.#maxBytes) {
      const oldest = this.#order.shift()!;
      if (this.#entries.get(oldest.key) === oldest.entry) this.#forget(oldest.key);
    }
    // Stale places pile up when ids are kept again under the bounds: start
    // over from the Map, which holds each key once, oldest first.
    if (this.#order.length > 2 * this.#entries.size + 1024) {
      this.#order = new Fifo();
      for (const [key, kept] of this.#entries) this.#order.push({ key, entry: kept });
    }
  }

  #forget(key: string): void {
    const entry = this.#entries.get(key);
    if (!entry) return;
    this.#entries.delete(key);
    this.#bytes -= entry.bytes;
  }
}
