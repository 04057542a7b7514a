/**
 * The asynchronous calls this gateway made, by id: whose key made each
 * (another key's id is not found), and its outcome once it ended. Bounded
 * in number and time: a record is kept `ttlMs` after it ended, and past
 * `max` records the oldest ended ones go first. Held in this process only:
 * a call submitted through one gateway replica is found only there
 * (docs/gateway.md says so).
 *
 * @module
 */

import type { CallOutcome } from "../client/mod.ts";

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
    const record: CallRecord = { id, function: fn, owner, createdMs: this.#now() };
    this.#records.set(id, record);
    return record;
  }

  end(id: string, ended: { outcome?: CallOutcome; lost?: string }): void {
    const record = this.#records.get(id);
    if (!record) return;
    Object.assign(record, ended, { endedMs: this.#now() });
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
