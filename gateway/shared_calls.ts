/**
 * The {@linkcode CallStore} every gateway replica shares: the records of
 * `call_ledger.ts` on the stream {@linkcode GATEWAY_CALLS_STREAM}, which
 * each replica appends to and reads from the start of the window when it
 * starts, and one durable reply queue for the replies of asynchronous
 * calls (`replies.named.<user>.calls`), which the replicas consume as
 * competing consumers. So:
 *
 * - `GET`, `DELETE /calls/{id}` and its events work from any replica: a
 *   replica that does not know an id yet writes a marker and reads it back
 *   before it answers 404, so that a call whose `202` came from another
 *   replica is found;
 * - whichever replica receives a reply appends the call's `ended` record,
 *   then acknowledges the reply; the replica whose `ended` record comes
 *   first on the stream delivers the callback;
 * - a call with no reply by its deadline is ended as a timeout by the
 *   replica that took it (5 s after its deadline), or by any other (15 s
 *   after), should that one be gone;
 * - an Idempotency-Key is claimed on the stream: the first claim in stream
 *   order wins; see {@linkcode SharedCalls.claim}.
 *
 * When the stream cannot be read or written the store says why
 * (`unavailable()`), the gateway answers 503 for what needs it and keeps
 * serving synchronous calls, and the store tries again every few seconds.
 *
 * @module
 */

import type { Broker, Consumer, Delivery } from "../core/broker/mod.ts";
import {
  CONTENT_TYPE,
  DEADLINE_EXCEEDED,
  GATEWAY_CALLS_NAME,
  GATEWAY_CALLS_STREAM,
  GATEWAY_CALLS_STREAM_OPTIONS,
  GATEWAY_CALLS_WINDOW_MS,
  GATEWAY_RECORD_MESSAGE_TYPE,
  GATEWAY_SYNC_MESSAGE_TYPE,
  NAMED_REPLY_QUEUE_IDLE_MS,
  NAMED_REPLY_QUEUE_MAX_LENGTH,
  namedReplyQueueOf,
} from "../core/contract/mod.ts";
import type { FunctionRoute } from "../core/registry.ts";
import { isExpectedSender, NATIVE_PROTOCOL } from "../client/protocol.ts";
import { type CallTrace, startCallTrace } from "../client/trace.ts";
import { BrokerUnavailableError } from "../client/mod.ts";
import { openBroker, type OpenBrokerOptions } from "../client/open_broker.ts";
import {
  CallLedger,
  encodeRecord,
  type LedgerCall,
  type LedgerRecord,
  MAX_RECORD_BYTES,
  stamp,
  type Stamped,
  type StoredOutcome,
} from "./call_ledger.ts";
import {
  type AsyncCall,
  type CallStore,
  type IdempotencyClaim,
  type StoredCall,
  type StoredResponse,
  StoreUnavailableError,
} from "./call_records.ts";

/** Options of {@linkcode SharedCalls.start}. */
export interface SharedCallsOptions {
  /** The connection of the record (its own, so that its trouble leaves synchronous calls be). */
  broker: Broker;
  functions: ReadonlyMap<string, FunctionRoute>;
  /** The replicas' shared reply queue, such as `replies.named.gateway.calls`. */
  replyQueue: string;
  /** @default {GATEWAY_CALLS_STREAM} */
  stream?: string;
  /** @default {GATEWAY_CALLS_WINDOW_MS} */
  windowMs?: number;
  /** Most calls, and most keys. @default {100000} */
  max?: number;
  /** How long a write, or reading a marker back, may take. @default {5000} */
  deadlineMs?: number;
  /** Time between tries to read the stream again after it was lost. @default {5000} */
  retryMs?: number;
  /** Lines for the gateway's log. */
  log: (line: string) => void;
  /** @default {Date.now} */
  now?: () => number;
}

/** How long after its deadline the replica that took a call ends it as a timeout. */
const OWN_TIMEOUT_GRACE_MS = 5_000;
/** How long after its deadline any replica does. */
const ANY_TIMEOUT_GRACE_MS = 15_000;
/** How long a reply for a call not read yet is held before it is dropped. */
const EARLY_REPLY_MS = 30_000;
/** How long a replica may take to read the stream's window back, when it starts or reconnects. */
const CATCH_UP_MS = 60_000;
/** Rounds of claiming a key whose winner freed it or let its hold pass. */
const CLAIM_ROUNDS = 3;

/** The shared store; see the module documentation. */
export class SharedCalls implements CallStore {
  readonly #broker: Broker;
  readonly #options: SharedCallsOptions;
  readonly #stream: string;
  readonly #deadlineMs: number;
  readonly #now: () => number;
  readonly #ledger: CallLedger;
  readonly replica = crypto.randomUUID();
  /** Nonces of the `ended` records this replica wrote and has not read back. */
  readonly #nonces = new Set<string>();
  /** `done` of the calls this replica took and that have not ended, with their deadlines. */
  readonly #leaves = new Map<string, { done: () => void; deadline: number }>();
  readonly #traces = new Map<string, CallTrace>();
  readonly #timedOut = new Set<string>();
  readonly #early = new Map<string, { delivery: Delivery; at: number }>();
  readonly #markers = new Map<string, () => void>();
  #pendingSync: { promise: Promise<void>; published: boolean } | undefined;
  #listener: (call: StoredCall) => void = () => {};
  #reason: string | undefined = "its stream is not read yet";
  /** Whether the log was told of the present trouble. */
  #told = false;
  #streamConsumer: Consumer | undefined;
  #replyConsumer: Consumer | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;
  #retry: ReturnType<typeof setTimeout> | undefined;
  #starting: Promise<void> | undefined;
  #closed = false;
  /** Replies dropped: from a sender not the function's, unreadable, or for no call known. */
  ignoredReplies = 0;
  /** Callbacks this replica was the one to deliver: it wrote the call's first end. */
  callbacks = 0;

  private constructor(options: SharedCallsOptions) {
    this.#options = options;
    this.#broker = options.broker;
    this.#stream = options.stream ?? GATEWAY_CALLS_STREAM;
    this.#deadlineMs = options.deadlineMs ?? 5_000;
    this.#now = options.now ?? Date.now;
    this.#ledger = new CallLedger({
      windowMs: options.windowMs ?? GATEWAY_CALLS_WINDOW_MS,
      max: options.max,
      now: this.#now,
      onEnded: (call) => this.#ended(call),
    });
  }

  /**
   * Starts reading the stream; resolves once it has read what was written
   * before it started, or once it knows it cannot (then `unavailable()` says
   * why, and it tries again every `retryMs`). Never rejects for the stream.
   */
  static async start(options: SharedCallsOptions): Promise<SharedCalls> {
    const store = new SharedCalls(options);
    store.#timer = setInterval(() => store.#sweep(), 1_000);
    await store.#open();
    return store;
  }

  unavailable(): string | undefined {
    return this.#reason;
  }

  hasRoom(): boolean {
    return this.#ledger.hasRoom();
  }

  /** Tells the store the connection came back: it reads the stream up to now again. */
  reconnected(): void {
    if (this.#reason === undefined) this.#down("the broker connection was lost");
    this.#scheduleOpen(0);
  }

  /** Tells the store the connection is lost. */
  lost(): void {
    this.#down("the broker connection is lost");
  }

  async submit(call: AsyncCall): Promise<string> {
    this.#check();
    const route = this.#options.functions.get(call.fn);
    if (!route || route.protocol === "celery") {
      throw new TypeError(
        `Cannot call '${call.fn}' asynchronously as Celery workers serve it, whose answers only a synchronous call reads: call it without Prefer: respond-async`,
      );
    }
    const id = crypto.randomUUID();
    const sent = this.#now();
    const deadline = sent + call.timeoutMs;
    const accepted = stamp({
      kind: "accepted",
      id,
      fn: call.fn,
      owner: call.owner,
      deadline,
      ...(call.callback !== undefined && { callback: call.callback }),
    }, sent);
    // The record first: a reply can then never come for a call no replica can know.
    await this.#append(accepted);
    this.#ledger.apply(accepted);
    this.#leaves.set(id, { done: call.done, deadline });
    const trace = startCallTrace(call.fn, route.queue, id);
    if (trace) this.#traces.set(id, trace);
    const request = NATIVE_PROTOCOL.encode(call.fn, call.payload, {
      taskId: id,
      replyTo: this.#options.replyQueue,
      deadline,
      headers: trace?.headers,
      stampSentAt: trace !== undefined,
      now: sent,
    });
    try {
      await this.#within(this.#broker.publish(route.queue, request), "send the call");
    } catch (error) {
      trace?.fail(error as Error);
      const recorded = this.#ledger.call(id);
      if (recorded) {
        await this.#append(this.#endedRecord(recorded, { lost: "NotSent" }).record)
          .catch(() => {});
      }
      throw new BrokerUnavailableError(
        `Cannot send call ${id} of '${call.fn}' as the broker did not take it: retry`,
        { cause: error },
      );
    }
    return id;
  }

  async find(id: string, owner: string): Promise<StoredCall | undefined> {
    this.#check();
    const known = this.#ledger.get(id, owner);
    if (known || this.#ledger.call(id)) return known;
    // Taken by another replica moments ago, maybe: read the stream up to now first.
    await this.#sync();
    return this.#ledger.get(id, owner);
  }

  /**
   * Claims the Idempotency-Key `key` of `owner`: appends a claim and reads
   * it back. The first claim of the key in stream order wins (`new`); a
   * later one with the same fingerprint is a repeat, and waits for the
   * winner's response; with another, a mismatch. A winner that gives the
   * key up (released), or whose hold passes unsettled (its replica died),
   * frees the key: the waiting repeat claims again, and may win.
   */
  async claim(
    owner: string,
    key: string,
    fingerprint: string,
    holdMs: number,
  ): Promise<IdempotencyClaim> {
    for (let round = 0; round < CLAIM_ROUNDS; round++) {
      this.#check();
      const claim = crypto.randomUUID();
      const read = this.#ledger.whenRead(claim);
      const hold = this.#now() + holdMs;
      try {
        await this.#append(
          stamp({ kind: "claim", claim, owner, key, fp: fingerprint, by: this.replica, hold }),
        );
      } catch (error) {
        this.#ledger.forget(claim);
        throw error;
      }
      const fate = await this.#within(read, "read the claim back").catch((error) => {
        this.#ledger.forget(claim);
        throw error;
      });
      if (fate.kind === "won") return this.#won(claim, owner, key, fingerprint);
      if (fate.kind === "mismatch") return { kind: "mismatch" };
      let timer: ReturnType<typeof setTimeout> | undefined;
      const response = await Promise.race([
        fate.response,
        new Promise<"free">((resolve) =>
          timer = setTimeout(() => resolve("free"), Math.max(0, fate.hold - this.#now()) + 1_000)
        ),
      ]);
      clearTimeout(timer);
      if (response !== "free") return { kind: "repeat", response: Promise.resolve(response) };
    }
    throw new StoreUnavailableError(
      `Cannot use the Idempotency-Key as other requests with it neither end nor free it: retry later`,
    );
  }

  onCallback(listener: (call: StoredCall) => void): void {
    this.#listener = listener;
  }

  metricsText(): string {
    const ledger = this.#ledger;
    return [
      "# HELP gateway_calls_record_up Whether the shared record of calls is read and written (1) or not (0).",
      "# TYPE gateway_calls_record_up gauge",
      `gateway_calls_record_up ${this.#reason === undefined ? 1 : 0}`,
      "# HELP gateway_calls_records_skipped_total Records of the stream skipped: malformed, of another writer or version.",
      "# TYPE gateway_calls_records_skipped_total counter",
      `gateway_calls_records_skipped_total ${ledger.skipped}`,
      "# HELP gateway_calls_records_expired_total Records skipped as older than the window.",
      "# TYPE gateway_calls_records_expired_total counter",
      `gateway_calls_records_expired_total ${ledger.expired}`,
      "# HELP gateway_calls_dropped_total Calls or keys forgotten early to keep memory bounded.",
      "# TYPE gateway_calls_dropped_total counter",
      `gateway_calls_dropped_total ${ledger.dropped}`,
      "# HELP gateway_calls_replies_ignored_total Replies dropped: unexpected sender, unreadable, or no such call.",
      "# TYPE gateway_calls_replies_ignored_total counter",
      `gateway_calls_replies_ignored_total ${this.ignoredReplies}`,
      "# HELP gateway_calls_callbacks_total Callbacks this replica delivered: it wrote the call's first end.",
      "# TYPE gateway_calls_callbacks_total counter",
      `gateway_calls_callbacks_total ${this.callbacks}`,
      "# HELP gateway_calls_known Calls this replica knows of now.",
      "# TYPE gateway_calls_known gauge",
      `gateway_calls_known ${ledger.size}`,
      "",
    ].join("\n");
  }

  /** Stops reading; the connection is its owner's to close. */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    clearTimeout(this.#retry);
    this.#down("the gateway is stopping");
    await this.#streamConsumer?.cancel().catch(() => {});
    this.#streamConsumer = undefined;
  }

  #check(): void {
    if (this.#reason !== undefined) {
      throw new StoreUnavailableError(`Cannot use the record of calls as ${this.#reason}`);
    }
  }

  #down(reason: string): void {
    const was = this.#reason;
    this.#reason = reason;
    // Replies wait in the queue for a replica that can record them.
    const replies = this.#replyConsumer;
    this.#replyConsumer = undefined;
    replies?.cancel().catch(() => {});
    for (const { delivery } of this.#early.values()) this.#broker.nack(delivery, true);
    this.#early.clear();
    if (was === undefined || !this.#told) {
      this.#told = true;
      this.#options.log(
        `gateway: the shared record of calls is unavailable (${reason}): asynchronous calls, GET/DELETE /calls and Idempotency-Keys answer 503 until it is back; synchronous calls go on`,
      );
    }
  }

  #scheduleOpen(delayMs: number): void {
    if (this.#closed) return;
    clearTimeout(this.#retry);
    this.#retry = setTimeout(() => void this.#open(), delayMs);
  }

  #open(): Promise<void> {
    this.#starting ??= this.#openOnce().finally(() => this.#starting = undefined);
    return this.#starting;
  }

  async #openOnce(): Promise<void> {
    const broker = this.#broker;
    try {
      if (!this.#streamConsumer) {
        if ((await this.#within(broker.inspectQueue(this.#stream), "check the stream")) === null) {
          await this.#within(
            broker.declareQueue(this.#stream, GATEWAY_CALLS_STREAM_OPTIONS),
            "declare the stream",
          );
        }
        await this.#within(
          broker.declareQueue(this.#options.replyQueue, {
            durable: true,
            type: "quorum",
            expiresMs: NAMED_REPLY_QUEUE_IDLE_MS,
            maxLength: NAMED_REPLY_QUEUE_MAX_LENGTH,
          }),
          "declare the reply queue",
        );
        const windowMs = this.#options.windowMs ?? GATEWAY_CALLS_WINDOW_MS;
        const held: { consumer?: Consumer } = {};
        held.consumer = await this.#within(
          broker.consume(this.#stream, (delivery) => this.#read(delivery), {
            prefetch: 512,
            offset: { sinceMs: this.#now() - windowMs },
            // Its nodes gone: read it anew (records read twice count once) once it is back.
            onLost: (reason) => {
              if (this.#streamConsumer === held.consumer) this.#streamConsumer = undefined;
              void held.consumer?.cancel().catch(() => {});
              this.#down(`the stream was lost (${reason})`);
              this.#scheduleOpen(this.#options.retryMs ?? 5_000);
            },
          }),
          "read the stream",
        );
        this.#streamConsumer = held.consumer;
      }
      // Up to an hour of records to read first: longer than a request may wait.
      await this.#sync(CATCH_UP_MS);
      if (!this.#replyConsumer) {
        this.#replyConsumer = await this.#within(
          broker.consume(this.#options.replyQueue, (delivery) => this.#reply(delivery), {
            prefetch: 256,
          }),
          "consume the reply queue",
        );
      }
      if (this.#reason !== undefined) {
        this.#options.log(
          `gateway: the shared record of calls is read (${this.#ledger.size} calls, ${this.#ledger.keys} keys in its window)`,
        );
      }
      this.#reason = undefined;
      this.#told = false;
    } catch (error) {
      const message = String((error as Error)?.message ?? error).slice(0, 300);
      this.#down(
        /refused|denied|403|ACCESS/i.test(message)
          ? `the broker refuses it the stream '${this.#stream}' or the reply queue '${this.#options.replyQueue}': load the broker's definitions, which make the stream and grant the gateway's user read on both (ops/rabbitmq/definitions.ts gatewayPermissions; ${message})`
          : `the stream '${this.#stream}' cannot be read or written now (${message})`,
      );
      this.#scheduleOpen(this.#options.retryMs ?? 5_000);
    }
  }

  /** One message of the stream. */
  #read(delivery: Delivery): void {
    this.#broker.ack(delivery);
    const own = delivery.properties.userId === this.#broker.user;
    if (delivery.properties.type === GATEWAY_SYNC_MESSAGE_TYPE) {
      const id = delivery.properties.correlationId;
      if (own && id !== undefined) this.#markers.get(id)?.();
      return;
    }
    // RabbitMQ checks user_id against the connection's user: only the gateway's records count.
    this.#ledger.take(delivery.body, own);
    if (this.#early.size > 0) {
      for (const [id, early] of this.#early) {
        if (this.#ledger.call(id)) {
          this.#early.delete(id);
          this.#reply(early.delivery);
        }
      }
    }
  }

  /** Writes a marker and resolves once it is read back: everything before it has been read. */
  #sync(timeoutMs = this.#deadlineMs): Promise<void> {
    // Callers in the same turn share one marker: it is written after all of them asked.
    if (this.#pendingSync && !this.#pendingSync.published) return this.#pendingSync.promise;
    const marker = crypto.randomUUID();
    const pending: { promise: Promise<void>; published: boolean } = {
      published: false,
      promise: Promise.resolve(),
    };
    pending.promise = (async () => {
      const back = new Promise<void>((resolve) => this.#markers.set(marker, resolve));
      await Promise.resolve();
      pending.published = true;
      try {
        await this.#within(
          this.#broker.publish(this.#stream, {
            body: new TextEncoder().encode("{}"),
            properties: {
              contentType: CONTENT_TYPE,
              type: GATEWAY_SYNC_MESSAGE_TYPE,
              correlationId: marker,
            },
          }),
          "write a marker",
        );
        await this.#within(back, "read its marker back", timeoutMs);
      } finally {
        this.#markers.delete(marker);
      }
    })();
    this.#pendingSync = pending;
    return pending.promise;
  }

  /** Appends `record` to the stream; a {@linkcode StoreUnavailableError} when it cannot. */
  async #append(record: Stamped): Promise<void> {
    const body = encodeRecord(record);
    if (body.byteLength > MAX_RECORD_BYTES) {
      throw new RangeError(
        `Cannot record ${record.kind} as it takes ${body.byteLength} bytes, over ${MAX_RECORD_BYTES}`,
      );
    }
    await this.#within(
      this.#broker.publish(this.#stream, {
        body,
        properties: { contentType: CONTENT_TYPE, type: GATEWAY_RECORD_MESSAGE_TYPE },
      }),
      `write a record to the stream '${this.#stream}'`,
    );
  }

  /** `promise`, or a {@linkcode StoreUnavailableError} once it takes too long or fails. */
  async #within<T>(promise: Promise<T>, what: string, timeoutMs = this.#deadlineMs): Promise<T> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      return await Promise.race([
        promise,
        new Promise<never>((_, reject) =>
          timer = setTimeout(
            () =>
              reject(
                new StoreUnavailableError(
                  `Cannot ${what} within ${timeoutMs} ms: the broker is slow or away`,
                ),
              ),
            timeoutMs,
          )
        ),
      ]);
    } catch (error) {
      if (error instanceof StoreUnavailableError || error instanceof RangeError) throw error;
      throw new StoreUnavailableError(
        `Cannot ${what}: ${String((error as Error)?.message ?? error).slice(0, 300)}`,
        { cause: error },
      );
    } finally {
      clearTimeout(timer);
    }
  }

  #won(claim: string, owner: string, key: string, fp: string): IdempotencyClaim {
    const write = (record: LedgerRecord) =>
      this.#append(stamp(record)).catch((error) =>
        this.#options.log(
          `gateway: could not record the end of an Idempotency-Key's request (${
            (error as Error).message
          }): its repeats wait until its hold passes, then run again`,
        )
      );
    return {
      kind: "new",
      settle: (response: StoredResponse) => {
        if (response.body.length > MAX_RECORD_BYTES / 2) {
          this.#options.log(
            `gateway: a response of ${response.body.length} characters is too large to keep for its Idempotency-Key: a repeat runs the request again`,
          );
          void write({ kind: "released", claim, owner, key });
          return;
        }
        void write({ kind: "settled", claim, owner, key, fp, response });
      },
      release: () => void write({ kind: "released", claim, owner, key }),
    };
  }

  /** The `ended` record of `call`, its nonce kept: reading it back first, this replica calls back. */
  #endedRecord(
    call: LedgerCall,
    end: { outcome: StoredOutcome } | { lost: string },
  ): { record: Stamped; nonce: string } {
    const nonce = crypto.randomUUID();
    this.#nonces.add(nonce);
    const record = stamp({
      kind: "ended",
      id: call.id,
      fn: call.function,
      owner: call.owner,
      nonce,
      ...end,
    });
    return { record, nonce };
  }

  /** One message of the shared reply queue. */
  #reply(delivery: Delivery): void {
    const id = delivery.properties.correlationId;
    const call = id === undefined ? undefined : this.#ledger.call(id);
    if (id === undefined) {
      this.ignoredReplies++;
      return this.#broker.ack(delivery);
    }
    if (!call) {
      // Its `accepted` record is on its way down the stream. A second reply of it is a copy.
      const held = this.#early.get(id);
      if (held) this.#broker.ack(held.delivery);
      this.#early.set(id, { delivery, at: this.#now() });
      return;
    }
    if (call.endedMs !== undefined) return this.#broker.ack(delivery);
    const route = this.#options.functions.get(call.function);
    const answer = isExpectedSender(
        delivery.properties.userId,
        route?.user ?? call.function,
        this.#broker.user,
      )
      ? NATIVE_PROTOCOL.read(delivery)
      : { kind: "invalid" as const };
    if (answer.kind !== "reply") {
      if (answer.kind === "invalid") this.ignoredReplies++;
      return this.#broker.ack(delivery);
    }
    const timedOut = answer.reply.error?.type === DEADLINE_EXCEEDED;
    const { record, nonce } = this.#endedRecord(call, {
      outcome: timedOut ? { kind: "timeout" } : { kind: "reply", reply: answer.reply },
    });
    this.#append(record).then(
      () => this.#broker.ack(delivery),
      async (error) => {
        this.#nonces.delete(nonce);
        if (error instanceof RangeError) {
          // A result too large to record: the call is known to have ended, not how.
          const lost = this.#endedRecord(call, { lost: "ResultTooLarge" });
          try {
            await this.#append(lost.record);
            return this.#broker.ack(delivery);
          } catch {
            this.#nonces.delete(lost.nonce);
          }
        }
        this.#options.log(
          `gateway: could not record the end of call ${id} (${
            (error as Error).message
          }): its reply goes back to the queue`,
        );
        this.#broker.nack(delivery, true);
      },
    );
  }

  /** A call's first end, read from the stream. */
  #ended(call: LedgerCall): void {
    this.#leaves.get(call.id)?.done();
    this.#leaves.delete(call.id);
    this.#timedOut.delete(call.id);
    const trace = this.#traces.get(call.id);
    this.#traces.delete(call.id);
    if (trace) {
      if (call.outcome?.kind === "reply") trace.answered(call.outcome.reply, false);
      else trace.end({ outcome: call.outcome ? "timeout" : "broker_error" });
    }
    if (call.endedBy === undefined || !this.#nonces.delete(call.endedBy)) return;
    if (call.callback === undefined) return;
    this.callbacks++;
    this.#listener(call);
  }

  /** Each second: replies held too long, calls past their deadline, what expired. */
  #sweep(): void {
    const now = this.#now();
    for (const [id, early] of this.#early) {
      if (now - early.at < EARLY_REPLY_MS) continue;
      this.#early.delete(id);
      this.ignoredReplies++;
      this.#broker.ack(early.delivery);
    }
    // Calls whose end this replica never read (its stream was away) no longer count in flight.
    for (const [id, leave] of this.#leaves) {
      if (now < leave.deadline + 4 * ANY_TIMEOUT_GRACE_MS) continue;
      this.#leaves.delete(id);
      leave.done();
    }
    if (this.#reason === undefined) {
      for (const call of this.#ledger.pending()) {
        if (call.deadline === undefined || this.#timedOut.has(call.id)) continue;
        const grace = this.#leaves.has(call.id) ? OWN_TIMEOUT_GRACE_MS : ANY_TIMEOUT_GRACE_MS;
        if (now < call.deadline + grace) continue;
        this.#timedOut.add(call.id);
        const { record, nonce } = this.#endedRecord(call, { outcome: { kind: "timeout" } });
        this.#append(record).catch(() => {
          this.#timedOut.delete(call.id);
          this.#nonces.delete(nonce);
        });
      }
    }
    this.#ledger.sweep();
    // Nonces whose record was never read (the write failed unseen) go with the window.
    if (this.#nonces.size > 100_000) this.#nonces.clear();
  }
}

/** Options of {@linkcode openSharedCalls}. */
export interface OpenSharedCallsOptions
  extends Pick<OpenBrokerOptions, "settings" | "names" | "env" | "user"> {
  functions: ReadonlyMap<string, FunctionRoute>;
  /**
   * The record's name: the stream `gateway.<name>` (`gateway.calls`) and
   * the reply queue `replies.named.<user>.<name>`; another name keeps
   * another record, as tests sharing one broker need.
   * @default {GATEWAY_CALLS_NAME}
   */
  name?: string;
  log: (line: string) => void;
}

/**
 * Opens a connection of its own for the record (so that its trouble leaves
 * the synchronous calls be) and starts a {@linkcode SharedCalls} on it.
 * Rejects only when the broker refuses the connection itself.
 */
export async function openSharedCalls(
  options: OpenSharedCallsOptions,
): Promise<{ store: SharedCalls; close(): Promise<void> }> {
  let store: SharedCalls | undefined;
  const opened = await openBroker({
    settings: options.settings,
    names: options.names,
    env: options.env,
    user: options.user,
    connectionName: "gateway-calls",
    reconnect: true,
    onConnectionEvent: (event) => {
      options.log(`gateway: record connection ${event.kind}`);
      if (event.kind === "lost") store?.lost();
      if (event.kind === "reconnected") store?.reconnected();
    },
  });
  const name = options.name ?? GATEWAY_CALLS_NAME;
  try {
    store = await SharedCalls.start({
      broker: opened.broker,
      functions: options.functions,
      stream: `gateway.${name}`,
      replyQueue: namedReplyQueueOf(opened.broker.user, name),
      log: options.log,
    });
  } catch (error) {
    await opened.close();
    throw error;
  }
  return {
    store,
    close: async () => {
      await store!.close();
      await opened.close();
    },
  };
}
