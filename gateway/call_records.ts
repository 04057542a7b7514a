/**
 * The asynchronous calls this gateway made, by id: whose key made each
 * (another key's id is not found), and its outcome once it ended. Bounded
 * in number and time: a record is kept `ttlMs` after it ended, and past
 * `max` records the oldest ended ones go first; and the Idempotency-Keys.
 *
 * The gateway reaches them through a {@linkcode CallStore}: this module's
 * {@linkcode LocalCalls} holds them in this process only (unit tests, one
 * replica); `shared_calls.ts` holds them in a stream every replica reads,
 * which `deno task gateway` uses.
 *
 * @module
 */

import type { CallOutcome, Payload, SubmitOptions } from "../client/mod.ts";

/** One asynchronous call. */
export interface CallRecord {
  id: string;
  function: string;
  /** The id of the key that made it. */
  owner: string;
  createdMs: number;
  outcome?: CallOutcome;
  /** Set when it could not be followed (the broker was lost, say). */
  lost?: string;
  endedMs?: number;
  /** Resolves when it ended (or was lost). */
  ended: Promise<void>;
}

/** Options of {@linkcode CallRecords}. */
export interface CallRecordsOptions {
  /** @default {100000} */
  max?: number;
  /** How long an ended call is kept. @default {3600000} */
  ttlMs?: number;
  now?: () => number;
}

/** The records, in order of creation. */
export class CallRecords {
  readonly #records = new Map<string, CallRecord>();
  readonly #enders = new Map<string, () => void>();
  readonly #max: number;
  readonly #ttlMs: number;
  readonly #now: () => number;

  constructor(options: CallRecordsOptions = {}) {
    this.#max = options.max ?? 100_000;
    this.#ttlMs = options.ttlMs ?? 3_600_000;
    this.#now = options.now ?? Date.now;
  }

  get size(): number {
    return this.#records.size;
  }

  /** Whether room is left for one more (after dropping what expired). */
  hasRoom(): boolean {
    this.#sweep();
    return this.#records.size < this.#max;
  }

  add(id: string, fn: string, owner: string): CallRecord {
    const { promise, resolve } = Promise.withResolvers<void>();
    const record: CallRecord = { id, function: fn, owner, createdMs: this.#now(), ended: promise };
    this.#records.set(id, record);
    this.#enders.set(id, resolve);
    return record;
  }

  end(id: string, ended: { outcome?: CallOutcome; lost?: string }): void {
    const record = this.#records.get(id);
    if (!record) return;
    Object.assign(record, ended, { endedMs: this.#now() });
    this.#enders.get(id)?.();
    this.#enders.delete(id);
  }

  /** The record of `id` if the key `owner` made it; else `undefined`, as for an unknown id. */
  get(id: string, owner: string): CallRecord | undefined {
    this.#sweep();
    const record = this.#records.get(id);
    return record?.owner === owner ? record : undefined;
  }

  #sweep(): void {
    const now = this.#now();
    for (const [id, record] of this.#records) {
      if (record.endedMs !== undefined && now - record.endedMs > this.#ttlMs) {
        this.#records.delete(id);
      }
    }
    if (this.#records.size < this.#max) return;
    for (const [id, record] of this.#records) {
      if (this.#records.size < this.#max) break;
      if (record.endedMs !== undefined) this.#records.delete(id);
    }
  }
}

/** A response as kept for a repeat of its request: status, headers and body. */
export interface StoredResponse {
  status: number;
  headers: [string, string][];
  body: string;
}

/** What {@linkcode IdempotencyKeys.claim} found. */
export type IdempotencyClaim =
  /** First use: run the request, then `settle` with its response (or `release` to forget it). */
  | { kind: "new"; settle(response: StoredResponse): void; release(response: StoredResponse): void }
  /** A repeat: the first request's response, once it has one. */
  | { kind: "repeat"; response: Promise<StoredResponse> }
  /** The key was used for another request. */
  | { kind: "mismatch" };

/**
 * The `Idempotency-Key`s this gateway has seen, per API key: a repeat of
 * a request gets the first one's response (waiting for it while it runs),
 * and the same key with another request is refused. Kept `ttlMs` after
 * the response, at most `max`; in this process only.
 */
export class IdempotencyKeys {
  readonly #entries = new Map<
    string,
    { fingerprint: string; response: Promise<StoredResponse>; settledMs?: number }
  >();
  readonly #max: number;
  readonly #ttlMs: number;
  readonly #now: () => number;

  constructor(options: CallRecordsOptions = {}) {
    this.#max = options.max ?? 100_000;
    this.#ttlMs = options.ttlMs ?? 3_600_000;
    this.#now = options.now ?? Date.now;
  }

  claim(owner: string, key: string, fingerprint: string): IdempotencyClaim {
    this.#sweep();
    const id = `${owner}\n${key}`;
    const entry = this.#entries.get(id);
    if (entry) {
      return entry.fingerprint === fingerprint
        ? { kind: "repeat", response: entry.response }
        : { kind: "mismatch" };
    }
    const { promise, resolve } = Promise.withResolvers<StoredResponse>();
    const created = { fingerprint, response: promise, settledMs: undefined as number | undefined };
    this.#entries.set(id, created);
    return {
      kind: "new",
      settle: (response) => {
        created.settledMs = this.#now();
        resolve(response);
      },
      // Waiting repeats get this response; later ones run the request again.
      release: (response) => {
        if (this.#entries.get(id) === created) this.#entries.delete(id);
        resolve(response);
      },
    };
  }

  #sweep(): void {
    const now = this.#now();
    for (const [id, entry] of this.#entries) {
      if (entry.settledMs !== undefined && now - entry.settledMs > this.#ttlMs) {
        this.#entries.delete(id);
      }
    }
    for (const [id, entry] of this.#entries) {
      if (this.#entries.size < this.#max) break;
      if (entry.settledMs !== undefined) this.#entries.delete(id);
    }
  }
}

/** An asynchronous call to make. */
export interface AsyncCall {
  fn: string;
  payload?: Payload;
  timeoutMs: number;
  /** The id of the key that makes it. */
  owner: string;
  callback?: string;
  /** Called once when the call ended, or is no longer followed here. */
  done: () => void;
}

/** A call as a store gives it: its record, and its callback and deadline when known. */
export interface StoredCall extends CallRecord {
  callback?: string;
  deadline?: number;
}

/** The store cannot serve now (the stream is unreadable, say): answer 503. */
export class StoreUnavailableError extends Error {
  /** @param message What cannot be done, and why. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "StoreUnavailableError";
  }
}

/**
 * Where the gateway keeps its asynchronous calls and Idempotency-Keys. Each
 * method but `unavailable` and `hasRoom` rejects with a
 * {@linkcode StoreUnavailableError} when the store cannot serve, and
 * `submit` with the client's `BrokerUnavailableError` when the broker did
 * not take the call.
 */
export interface CallStore {
  /** Why the store cannot serve now, or `undefined` when it can. */
  unavailable(): string | undefined;
  /** Whether room is left for one more call. */
  hasRoom(): boolean;
  /** Sends the call and records it; resolves with its id once the broker has it. */
  submit(call: AsyncCall): Promise<string>;
  /** The call `id` if the key `owner` made it. */
  find(id: string, owner: string): Promise<StoredCall | undefined>;
  /** Claims an Idempotency-Key of `owner` for a request, held `holdMs` unless settled. */
  claim(owner: string, key: string, fingerprint: string, holdMs: number): Promise<IdempotencyClaim>;
  /** Tells `listener` of each ended call with a callback this gateway is to deliver. */
  onCallback(listener: (call: StoredCall) => void): void;
  /** Lines for `/metrics`, in Prometheus text. */
  metricsText?(): string;
}

/** What {@linkcode LocalCalls} needs of the client. */
export interface LocalBackend {
  submit(fn: string, payload?: Payload, options?: SubmitOptions): Promise<string>;
  result(id: string, options?: { timeoutMs?: number }): Promise<CallOutcome>;
}

/** A {@linkcode CallStore} in this process's memory: what one replica alone sees. */
export class LocalCalls implements CallStore {
  readonly records: CallRecords;
  readonly #backend: LocalBackend;
  readonly #idempotency: IdempotencyKeys;
  #listener: (call: StoredCall) => void = () => {};

  constructor(
    backend: LocalBackend,
    options: { records?: CallRecords; idempotency?: IdempotencyKeys } = {},
  ) {
    this.#backend = backend;
    this.records = options.records ?? new CallRecords();
    this.#idempotency = options.idempotency ?? new IdempotencyKeys();
  }

  unavailable(): string | undefined {
    return undefined;
  }

  hasRoom(): boolean {
    return this.records.hasRoom();
  }

  async submit(call: AsyncCall): Promise<string> {
    const id = await this.#backend.submit(call.fn, call.payload, { timeoutMs: call.timeoutMs });
    this.records.add(id, call.fn, call.owner);
    this.#backend.result(id, { timeoutMs: call.timeoutMs + 5_000 }).then(
      (outcome) => this.records.end(id, { outcome }),
      (error) => this.records.end(id, { lost: (error as Error).name }),
    ).finally(call.done).then(() => {
      const record = this.records.get(id, call.owner);
      if (call.callback !== undefined && record) {
        this.#listener({ ...record, callback: call.callback });
      }
    });
    return id;
  }

  find(id: string, owner: string): Promise<StoredCall | undefined> {
    return Promise.resolve(this.records.get(id, owner));
  }

  claim(owner: string, key: string, fingerprint: string): Promise<IdempotencyClaim> {
    return Promise.resolve(this.#idempotency.claim(owner, key, fingerprint));
  }

  onCallback(listener: (call: StoredCall) => void): void {
    this.#listener = listener;
  }
}
