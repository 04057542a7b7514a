/**
 * The book of a client's submitted calls (`TaskClient.submit()`): each call
 * from its submission to its collection (`result()`, `results()`), when the
 * outcome is handed to the program once.
 *
 * A client connected with a name keeps its book in its named reply queue
 * (`core/contract/named_callers.ts`), so that a program restarted under the
 * same name takes it up again:
 *
 * - each request goes out with a `BCC` copy to the queue, routed by the
 *   broker in the same publish: the copy is the record that the broker took
 *   the call, and the client holds it unacknowledged until the call is
 *   collected;
 * - replies wait in the queue, unacknowledged until collected too;
 * - a restarted client reads the queue again (records and replies come
 *   back, as nothing of them was acknowledged) and, after a marker of its
 *   own comes back through it, knows every call it submitted before that is
 *   not collected yet ({@linkcode CallBook.outstanding}).
 *
 * Collection acknowledges the record and the reply. With a journal (a file
 * of one JSON line per collected call, synced to disk before the
 * acknowledgements), a call collected just before a crash, whose
 * acknowledgements the broker never got, is not handed out again: each
 * outcome is collected exactly once. Without one, such a call comes again
 * after a restart (at least once).
 *
 * @module
 */

import type { Broker, Delivery } from "../core/broker/mod.ts";
import {
  CONTENT_TYPE,
  MAX_OUTSTANDING_CALLS,
  type Message,
  PROGRESS_MESSAGE_TYPE,
  SYNC_MESSAGE_TYPE,
} from "../core/contract/mod.ts";
import type { FunctionRoute } from "../core/registry.ts";
import { type CallOutcome, isExpectedSender, NATIVE_PROTOCOL } from "./protocol.ts";

/** How long after its deadline a call of an earlier run of the client, with no reply, ends as a timeout. */
const LATE_REPLY_GRACE_MS = 5_000;

/** What the book knows of one submitted call. */
interface Entry {
  id: string;
  fn: string;
  /** When the caller stops waiting (ms since the epoch), when known. */
  deadline?: number;
  sentWallMs: number;
  /** The copy of the request in the client's queue, held until collection. */
  record?: Delivery;
  /** The reply in the client's queue, held until collection. */
  reply?: Delivery;
  outcome?: CallOutcome;
}

/** Where a submitted call is: not ended yet, ended and waiting to be collected, or neither. */
export type CallState =
  | { state: "pending" }
  | { state: "done"; outcome: CallOutcome }
  | { state: "collected" }
  | { state: "unknown" };

/** A call still running after `result()` waited as long as it was told. */
export class ResultNotReadyError extends Error {
  /** The call's id. */
  readonly taskId: string;

  /** @param taskId The call. @param waitedMs How long it waited. */
  constructor(taskId: string, waitedMs: number) {
    super(
      `Call ${taskId} has not ended within ${waitedMs} ms: ask again later, or wait longer (timeoutMs)`,
    );
    this.name = "ResultNotReadyError";
    this.taskId = taskId;
  }
}

/** Options for {@linkcode CallBook}. */
export interface CallBookOptions {
  /** The functions, for whose answers count (their workers' users). */
  functions: ReadonlyMap<string, FunctionRoute>;
  /** The client's named reply queue; without it the book lives in this process only. */
  queue?: string;
  /** A file of the outcomes collected, for exactly-once collection across restarts. */
  journal?: string;
}

/** The book; see the module documentation. */
export class CallBook {
  readonly #broker: Broker;
  readonly #options: CallBookOptions;
  readonly #entries = new Map<string, Entry>();
  readonly #collected = new Set<string>();
  /** Ended calls in the order they ended, not yet collected: what `results()` takes next. */
  readonly #ended: string[] = [];
  readonly #waiters = new Map<string, (() => void)[]>();
  #wakeStream: (() => void) | undefined;
  readonly #syncs = new Map<string, () => void>();
  /**
   * Replies of an earlier run's calls that came before their record: a
   * queue gives back what a dead connection held in no set order, so the
   * reply of a call may be redelivered ahead of the record of the call.
   */
  readonly #early = new Map<string, Delivery>();
  #journal: Deno.FsFile | undefined;
  #committing: Promise<void> = Promise.resolve();
  #sweep: ReturnType<typeof setInterval> | undefined;
  #closed = false;

  private constructor(broker: Broker, options: CallBookOptions) {
    this.#broker = broker;
    this.#options = options;
  }

  /** A book; with a journal, the calls it names are known collected from the start. */
  static async open(broker: Broker, options: CallBookOptions): Promise<CallBook> {
    const book = new CallBook(broker, options);
    if (options.journal !== undefined) {
      for (const id of await readJournal(options.journal)) book.#collected.add(id);
      book.#journal = await Deno.open(options.journal, { append: true, create: true });
    }
    // Calls of an earlier run whose reply never comes end as timeouts, past their deadline.
    book.#sweep = setInterval(() => book.#expire(), 1000);
    return book;
  }

  /** Calls submitted and not collected. */
  get size(): number {
    return this.#entries.size;
  }

  /** The deadline of the submitted call `id`, when known: how long its cancellation must hold. */
  deadlineOf(id: string): number | undefined {
    return this.#entries.get(id)?.deadline;
  }

  /** Whether the call `id` is submitted and not collected. */
  has(id: string): boolean {
    return this.#entries.has(id);
  }

  /** Enters a call this client is about to submit; a `RangeError` when too many wait. */
  reserve(id: string, fn: string, deadline: number): void {
    if (this.#collected.has(id) || this.#entries.has(id)) {
      throw new TypeError(
        `Cannot submit call '${id}' as this client submitted a call of that id already: give each call its own id`,
      );
    }
    if (this.#entries.size >= MAX_OUTSTANDING_CALLS) {
      throw new RangeError(
        `Cannot submit another call as ${this.#entries.size} wait to be collected: collect results first (result(), results())`,
      );
    }
    this.#entries.set(id, { id, fn, deadline, sentWallMs: Date.now() });
  }

  /** Forgets a call whose request the broker did not take. */
  unreserve(id: string): void {
    const entry = this.#entries.get(id);
    if (entry && entry.record === undefined) this.#entries.delete(id);
  }

  /** Records how a call of this process ended; its reply delivery, if any, was held already. */
  ended(id: string, outcome: CallOutcome): void {
    const entry = this.#entries.get(id);
    if (!entry || entry.outcome) return;
    entry.outcome = outcome;
    this.#ended.push(id);
    this.#wake(id);
  }

  /**
   * Takes a message of the client's named queue, if it is the book's: a
   * record, a marker, or a reply of a call submitted by an earlier run.
   * `pending(id)` says whether a call of this process waits for it (then
   * `hold` is given the final reply to keep until collection, once the
   * caller's path took it). Returns false for a message the client must
   * handle (and acknowledge) itself.
   */
  take(delivery: Delivery, pending: (id: string) => boolean): boolean {
    const own = delivery.properties.userId === this.#broker.user;
    const id = delivery.properties.correlationId;
    if (own && delivery.properties.type === SYNC_MESSAGE_TYPE) {
      this.#broker.ack(delivery);
      // What came back before the marker came back: a reply still without
      // its record now belongs to no call of this book.
      for (const early of this.#early.values()) this.#broker.ack(early);
      this.#early.clear();
      if (id !== undefined) this.#syncs.get(id)?.();
      return true;
    }
    if (own && delivery.routingKey !== this.#options.queue) return this.#record(delivery), true;
    if (id === undefined || pending(id)) return false;
    const entry = this.#entries.get(id);
    if (!entry) {
      if (this.#collected.has(id)) {
        // A copy of a reply already collected.
        this.#broker.ack(delivery);
        return true;
      }
      // Given back by a dead connection ahead of its record: kept for it
      // (its progress, which an earlier run's call does without, is not).
      if (delivery.redelivered && this.#options.queue !== undefined) {
        if (delivery.properties.type === PROGRESS_MESSAGE_TYPE) {
          this.#broker.ack(delivery);
          return true;
        }
        if (this.#early.size < MAX_OUTSTANDING_CALLS && !this.#early.has(id)) {
          this.#early.set(id, delivery);
          return true;
        }
      }
      // One for no call of this book.
      return false;
    }
    if (entry.outcome) {
      // The reply again, after a reconnection: the one to acknowledge at collection.
      if (delivery.properties.type === PROGRESS_MESSAGE_TYPE || !entry.reply) {
        this.#broker.ack(delivery);
      } else entry.reply = delivery;
      return true;
    }
    this.#replyOfEarlierRun(entry, delivery);
    return true;
  }

  /** Keeps the final reply of a call of this process, to acknowledge at its collection. */
  hold(id: string, delivery: Delivery): void {
    const entry = this.#entries.get(id);
    if (!entry || entry.reply) return this.#broker.ack(delivery);
    entry.reply = delivery;
  }

  #record(delivery: Delivery): void {
    const id = delivery.properties.messageId ?? delivery.properties.correlationId;
    if (id === undefined || this.#collected.has(id)) return this.#broker.ack(delivery);
    const entry = this.#entries.get(id);
    if (entry) {
      if (entry.record) this.#broker.ack(entry.record);
      entry.record = delivery;
      return;
    }
    const body = readRecord(delivery);
    const created: Entry = {
      id,
      fn: body.task ?? "",
      deadline: body.deadline,
      sentWallMs: (delivery.properties.timestamp ?? 0) * 1000 || Date.now(),
      record: delivery,
    };
    this.#entries.set(id, created);
    const early = this.#early.get(id);
    if (early) {
      this.#early.delete(id);
      this.#replyOfEarlierRun(created, early);
    }
  }

  /** The reply to a call an earlier run of this client submitted: judged as the call path does. */
  #replyOfEarlierRun(entry: Entry, delivery: Delivery): void {
    const route = this.#options.functions.get(entry.fn);
    const sender = route?.user ?? entry.fn;
    const answer = isExpectedSender(delivery.properties.userId, sender, this.#broker.user)
      ? NATIVE_PROTOCOL.read(delivery)
      : { kind: "invalid" as const };
    if (answer.kind !== "reply" || delivery.properties.type === PROGRESS_MESSAGE_TYPE) {
      this.#broker.ack(delivery);
      return;
    }
    const now = Date.now();
    const timedOut = answer.reply.error?.type === "DeadlineExceeded";
    entry.reply = delivery;
    this.ended(entry.id, {
      ...(timedOut ? { kind: "timeout" } : { kind: "reply", reply: answer.reply }),
      taskId: entry.id,
      sentAt: performance.now() - (now - entry.sentWallMs),
      endedAt: performance.now(),
      sentWallMs: entry.sentWallMs,
      endedWallMs: now,
    });
  }

  /** Calls of an earlier run past their deadline with no reply: their request expired unanswered. */
  #expire(): void {
    const now = Date.now();
    for (const entry of this.#entries.values()) {
      if (entry.outcome || entry.deadline === undefined || !entry.record) continue;
      if (entry.deadline + LATE_REPLY_GRACE_MS > now) continue;
      this.ended(entry.id, {
        kind: "timeout",
        taskId: entry.id,
        sentAt: performance.now() - (now - entry.sentWallMs),
        endedAt: performance.now(),
        sentWallMs: entry.sentWallMs,
        endedWallMs: now,
      });
    }
  }

  /** Where the call `id` is; see {@linkcode CallState}. */
  state(id: string): CallState {
    const entry = this.#entries.get(id);
    if (entry?.outcome) return { state: "done", outcome: entry.outcome };
    if (entry) return { state: "pending" };
    return { state: this.#collected.has(id) ? "collected" : "unknown" };
  }

  /**
   * The ids of the calls submitted and not collected, this run's and every
   * earlier run's: a marker goes through the client's queue first, so that
   * every record in it before now has been read.
   */
  async outstanding(timeoutMs = 30_000): Promise<string[]> {
    if (this.#options.queue !== undefined) await this.#sync(this.#options.queue, timeoutMs);
    return [...this.#entries.keys()];
  }

  async #sync(queue: string, timeoutMs: number): Promise<void> {
    const id = crypto.randomUUID();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const back = new Promise<void>((resolve, reject) => {
      this.#syncs.set(id, resolve);
      timer = setTimeout(
        () =>
          reject(
            new Error(
              `Cannot list the calls of queue '${queue}' as its marker did not come back within ${timeoutMs} ms: is this client consuming it?`,
            ),
          ),
        timeoutMs,
      );
    });
    try {
      await this.#broker.publish(queue, syncMarker(id));
      await back;
    } finally {
      clearTimeout(timer);
      this.#syncs.delete(id);
    }
  }

  /**
   * The outcome of the call `id`, once it ended, collected: its record and
   * reply are acknowledged (after the journal has it), and it is not handed
   * out again. Waits `timeoutMs` at most.
   */
  async result(id: string, timeoutMs: number): Promise<CallOutcome> {
    if (!this.#entries.has(id)) {
      throw new TypeError(
        this.#collected.has(id)
          ? `Cannot collect call '${id}' as it was collected already: each outcome is handed out once`
          : `Cannot collect call '${id}' as this client did not submit it: give the id submit() returned`,
      );
    }
    const entry = this.#entries.get(id)!;
    if (!entry.outcome) await this.#waitFor(id, timeoutMs);
    if (this.#entries.get(id) !== entry) {
      throw new TypeError(
        `Cannot collect call '${id}' as results() collected it meanwhile: each outcome is handed out once`,
      );
    }
    const [outcome] = await this.#collect([entry]);
    return outcome;
  }

  /** Every call's outcome as it ends, collected; see {@linkcode TaskClient.results}. */
  async *results(): AsyncGenerator<CallOutcome, void, undefined> {
    while (!this.#closed) {
      if (this.#ended.length === 0) {
        await new Promise<void>((resolve) => this.#wakeStream = resolve);
        continue;
      }
      // Every call ended by now, collected together: one write and one sync of
      // the journal for all of them, then handed out one by one.
      const entries = this.#ended.splice(0).flatMap((id) => {
        const entry = this.#entries.get(id);
        // Taken by result() meanwhile.
        return entry?.outcome ? [entry] : [];
      });
      yield* await this.#collect(entries);
    }
  }

  #waitFor(id: string, timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        const list = this.#waiters.get(id)?.filter((waiter) => waiter !== done);
        if (list?.length) this.#waiters.set(id, list);
        else this.#waiters.delete(id);
        reject(new ResultNotReadyError(id, timeoutMs));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      this.#waiters.set(id, [...(this.#waiters.get(id) ?? []), done]);
    });
  }

  #wake(id: string): void {
    const waiters = this.#waiters.get(id);
    this.#waiters.delete(id);
    for (const waiter of waiters ?? []) waiter();
    this.#wakeStream?.();
    this.#wakeStream = undefined;
  }

  /**
   * Journals (and syncs) the outcomes of `entries`, then acknowledges what
   * the queue held of each: one write and one sync for them all.
   */
  #collect(entries: Entry[]): Promise<CallOutcome[]> {
    const outcomes = entries.map((entry) => entry.outcome!);
    // Taken now, so that a second taker does not collect them too.
    for (const entry of entries) {
      this.#entries.delete(entry.id);
      this.#collected.add(entry.id);
    }
    const text = entries.map((entry) =>
      JSON.stringify({ id: entry.id, function: entry.fn, outcome: entry.outcome }) + "\n"
    ).join("");
    const journal = this.#journal;
    this.#committing = this.#committing.then(async () => {
      if (journal && text !== "") {
        const bytes = new TextEncoder().encode(text);
        for (let written = 0; written < bytes.length;) {
          written += await journal.write(bytes.subarray(written));
        }
        await journal.syncData();
      }
      for (const entry of entries) {
        if (entry.record) this.#broker.ack(entry.record);
        if (entry.reply) this.#broker.ack(entry.reply);
      }
    });
    return this.#committing.then(() => outcomes);
  }

  /** Stops the book: `results()` ends, the journal is closed; held deliveries go back with the connection. */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#sweep);
    this.#wakeStream?.();
    await this.#committing.catch(() => {});
    this.#journal?.close();
    this.#journal = undefined;
  }
}

/** The ids a journal names; a line cut short by a crash is not one. */
async function readJournal(path: string): Promise<string[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return [];
    throw error;
  }
  const ids: string[] = [];
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    try {
      const id = JSON.parse(line).id;
      if (typeof id === "string") ids.push(id);
    } catch {
      // Cut short by a crash while it was written: that call was not collected.
    }
  }
  return ids;
}

/** What a record says of its call: its function and deadline, as the client wrote them. */
function readRecord(delivery: Delivery): { task?: string; deadline?: number } {
  try {
    const body = JSON.parse(new TextDecoder().decode(delivery.body));
    return {
      task: typeof body.task === "string" ? body.task : undefined,
      deadline: Number.isSafeInteger(body.deadline) ? body.deadline : undefined,
    };
  } catch {
    return {};
  }
}

function syncMarker(id: string): Message {
  return {
    body: new TextEncoder().encode("{}"),
    properties: { contentType: CONTENT_TYPE, type: SYNC_MESSAGE_TYPE, correlationId: id },
  };
}
