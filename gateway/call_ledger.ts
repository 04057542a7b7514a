/**
 * The shared record of the gateway replicas, as a fold of the records of a
 * RabbitMQ stream (`shared_calls.ts` reads and writes it): what every
 * replica knows of the asynchronous calls and the Idempotency-Keys, built
 * the same way by each from the same records in the same order.
 *
 * Records are small JSON objects, versioned (`v: 1`), each with the wall
 * time `at` its writer gave it. No API key nor its digest is ever in one:
 * `owner` is the key's public id; a request is known by the SHA-256 of what
 * it asked (`fp`), never by its payload. Folding the records again (the
 * stream read anew after a reconnection) changes nothing: a call known stays
 * as it is, its first end stays its end, and an earlier claim meets the key
 * held by its own or a later winner.
 *
 * - `accepted`: an asynchronous call was taken (id, function, owner,
 *   deadline, callback URL if any);
 * - `ended`: how it ended (outcome, or lost), self-contained (function and
 *   owner again), so that a call whose `accepted` left the stream is still
 *   found; the first `ended` of a call in stream order is its end, and its
 *   `nonce` tells its writer that it is the one to call back;
 * - `claim`: a replica claims (owner, key) for a request; the first claim in
 *   stream order wins, until it is settled, released, or its `hold` (wall
 *   time) passes unsettled: a claim written after that wins the key anew;
 * - `settled`: the winner's response, kept for the window after it (with
 *   the request's fingerprint: it stands alone once its claim left the window);
 * - `released`: the winner gives the key up (its request was refused).
 *
 * Whatever does not parse as one of these (another writer, another version,
 * a hostile body) is skipped and counted, never thrown. Records older than
 * the window are skipped too. Memory stays bounded: past `max` calls (or
 * keys) the oldest ended (or settled) go first, and past it by a tenth the
 * oldest at all.
 *
 * @module
 */

import type { CallOutcome } from "../client/mod.ts";
import type { TaskReply } from "../core/contract/mod.ts";
import type { CallRecord, StoredResponse } from "./call_records.ts";

/** The version of the records this gateway writes and reads. */
export const LEDGER_VERSION = 1;

/** Largest record read: a stored response or a result beyond this is not kept. */
export const MAX_RECORD_BYTES = 1024 * 1024;

/** How an ended call's outcome is written: the reply, or a timeout. */
export type StoredOutcome = { kind: "reply"; reply: TaskReply } | { kind: "timeout" };

/** A record of the stream. */
export type LedgerRecord =
  | {
    kind: "accepted";
    id: string;
    fn: string;
    owner: string;
    deadline: number;
    callback?: string;
  }
  | {
    kind: "ended";
    id: string;
    fn: string;
    owner: string;
    outcome?: StoredOutcome;
    lost?: string;
    nonce: string;
  }
  | {
    kind: "claim";
    claim: string;
    owner: string;
    key: string;
    fp: string;
    by: string;
    hold: number;
  }
  | {
    kind: "settled";
    claim: string;
    owner: string;
    key: string;
    fp: string;
    response: StoredResponse;
  }
  | { kind: "released"; claim: string; owner: string; key: string };

/** A record with what every record carries. */
export type Stamped = LedgerRecord & { v: number; at: number };

const ID = /^[\x21-\x7e]{1,255}$/;
const FP = /^[0-9a-f]{64}$/;

function str(value: unknown, pattern = ID): value is string {
  return typeof value === "string" && pattern.test(value);
}

function time(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value > 0;
}

function readReply(value: unknown): TaskReply | undefined {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined;
  const reply = value as Record<string, unknown>;
  if (reply.status !== "success" && reply.status !== "error") return undefined;
  if (!Number.isSafeInteger(reply.attempts) || typeof reply.task_id !== "string") return undefined;
  if (reply.status === "error") {
    const error = reply.error as Record<string, unknown> | undefined;
    if (
      typeof error !== "object" || error === null || typeof error.type !== "string" ||
      typeof error.message !== "string"
    ) return undefined;
  }
  return reply as unknown as TaskReply;
}

function readOutcome(value: unknown): StoredOutcome | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const outcome = value as Record<string, unknown>;
  if (outcome.kind === "timeout") return { kind: "timeout" };
  const reply = outcome.kind === "reply" ? readReply(outcome.reply) : undefined;
  return reply && { kind: "reply", reply };
}

function readResponse(value: unknown): StoredResponse | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const { status, headers, body } = value as Record<string, unknown>;
  if (!Number.isSafeInteger(status) || (status as number) < 100 || (status as number) > 599) {
    return undefined;
  }
  if (typeof body !== "string" || !Array.isArray(headers) || headers.length > 64) return undefined;
  for (const pair of headers) {
    if (
      !Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== "string" ||
      typeof pair[1] !== "string" || !/^[a-z0-9-]{1,64}$/.test(pair[0])
    ) return undefined;
  }
  return { status: status as number, headers: headers as [string, string][], body };
}

/** The record in `bytes`, or `undefined` when it is not one (of this version). */
export function parseRecord(bytes: Uint8Array): Stamped | undefined {
  if (bytes.byteLength > MAX_RECORD_BYTES) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined;
  const r = value as Record<string, unknown>;
  if (r.v !== LEDGER_VERSION || !time(r.at)) return undefined;
  const base = { v: LEDGER_VERSION, at: r.at };
  switch (r.kind) {
    case "accepted":
      if (!str(r.id) || !str(r.fn) || !str(r.owner) || !time(r.deadline)) return undefined;
      if (
        r.callback !== undefined && (typeof r.callback !== "string" || r.callback.length > 2048)
      ) {
        return undefined;
      }
      return {
        ...base,
        kind: "accepted",
        id: r.id,
        fn: r.fn,
        owner: r.owner,
        deadline: r.deadline,
        ...(r.callback !== undefined && { callback: r.callback as string }),
      };
    case "ended": {
      if (!str(r.id) || !str(r.fn) || !str(r.owner) || !str(r.nonce)) return undefined;
      const outcome = r.outcome === undefined ? undefined : readOutcome(r.outcome);
      const lost = typeof r.lost === "string" ? r.lost.slice(0, 200) : undefined;
      if ((outcome === undefined) === (lost === undefined)) return undefined;
      return {
        ...base,
        kind: "ended",
        id: r.id,
        fn: r.fn,
        owner: r.owner,
        nonce: r.nonce,
        ...(outcome ? { outcome } : { lost }),
      };
    }
    case "claim":
      if (
        !str(r.claim) || !str(r.owner) || !str(r.key) || !str(r.fp, FP) || !str(r.by) ||
        !time(r.hold)
      ) return undefined;
      return {
        ...base,
        kind: "claim",
        claim: r.claim,
        owner: r.owner,
        key: r.key,
        fp: r.fp,
        by: r.by,
        hold: r.hold,
      };
    case "settled": {
      const response = readResponse(r.response);
      if (!str(r.claim) || !str(r.owner) || !str(r.key) || !str(r.fp, FP) || !response) {
        return undefined;
      }
      return {
        ...base,
        kind: "settled",
        claim: r.claim,
        owner: r.owner,
        key: r.key,
        fp: r.fp,
        response,
      };
    }
    case "released":
      if (!str(r.claim) || !str(r.owner) || !str(r.key)) return undefined;
      return { ...base, kind: "released", claim: r.claim, owner: r.owner, key: r.key };
    default:
      return undefined;
  }
}

/** `record` stamped with the version and the time `at`. */
export function stamp(record: LedgerRecord, at = Date.now()): Stamped {
  return { v: LEDGER_VERSION, at, ...record };
}

/** A stamped record as the bytes of a stream message. */
export function encodeRecord(record: Stamped): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(record));
}

/** What became of a claim, once read in stream order. */
export type ClaimFate =
  /** It won the key: run the request, then settle or release it. */
  | { kind: "won" }
  /** A repeat of the winner's request: its response, or `free` when the key came free. */
  | { kind: "repeat"; response: Promise<StoredResponse | "free">; hold: number }
  | { kind: "mismatch" };

/** A call of the ledger, with what a callback needs. */
export interface LedgerCall extends CallRecord {
  deadline?: number;
  callback?: string;
  /** The nonce of its first `ended` record. */
  endedBy?: string;
}

interface Slot {
  claim: string;
  fp: string;
  hold: number;
  at: number;
  settledAt?: number;
  response?: StoredResponse;
  done: Promise<StoredResponse | "free">;
  finish: (value: StoredResponse | "free") => void;
}

/** Options of {@linkcode CallLedger}. */
export interface CallLedgerOptions {
  /** How long records count: an ended call, a settled key. @default {3600000} */
  windowMs?: number;
  /** Most calls, and most keys, kept. @default {100000} */
  max?: number;
  /** @default {Date.now} */
  now?: () => number;
  /** Told of every call's first end, in stream order. */
  onEnded?: (call: LedgerCall) => void;
}

/** The fold; see the module documentation. */
export class CallLedger {
  readonly #calls = new Map<string, LedgerCall>();
  readonly #enders = new Map<string, () => void>();
  readonly #slots = new Map<string, Slot>();
  readonly #fates = new Map<string, (fate: ClaimFate) => void>();
  readonly #windowMs: number;
  readonly #max: number;
  readonly #now: () => number;
  readonly #onEnded?: (call: LedgerCall) => void;
  /** Records skipped: not of this version, malformed, hostile. */
  skipped = 0;
  /** Records skipped as older than the window. */
  expired = 0;
  /** Calls or keys forgotten before their time to keep memory bounded. */
  dropped = 0;

  constructor(options: CallLedgerOptions = {}) {
    this.#windowMs = options.windowMs ?? 3_600_000;
    this.#max = options.max ?? 100_000;
    this.#now = options.now ?? Date.now;
    this.#onEnded = options.onEnded;
  }

  /** Calls known now. */
  get size(): number {
    return this.#calls.size;
  }

  /** Keys known now. */
  get keys(): number {
    return this.#slots.size;
  }

  /** Whether one more call may be taken (after forgetting what expired). */
  hasRoom(): boolean {
    this.sweep();
    return this.#calls.size < this.#max;
  }

  /** Calls not ended yet. */
  pending(): LedgerCall[] {
    return [...this.#calls.values()].filter((call) => call.endedMs === undefined);
  }

  /** The call `id` if `owner` made it; else `undefined`, as for an unknown id. */
  get(id: string, owner: string): LedgerCall | undefined {
    const call = this.#calls.get(id);
    return call?.owner === owner ? call : undefined;
  }

  /** The call `id`, whoever made it. */
  call(id: string): LedgerCall | undefined {
    return this.#calls.get(id);
  }

  /** Resolves with the fate of the claim `claim` once its record is read. */
  whenRead(claim: string): Promise<ClaimFate> {
    return new Promise((resolve) => this.#fates.set(claim, resolve));
  }

  /** Stops waiting for the claim `claim` (it was never written). */
  forget(claim: string): void {
    this.#fates.delete(claim);
  }

  /** Takes one message of the stream: its bytes, and whether its sender may write records. */
  take(bytes: Uint8Array, trusted: boolean): void {
    const record = trusted ? parseRecord(bytes) : undefined;
    if (!record) {
      this.skipped++;
      return;
    }
    this.apply(record);
  }

  /** Folds one record. */
  apply(record: Stamped): void {
    const now = this.#now();
    const stale = record.at < now - this.#windowMs;
    switch (record.kind) {
      case "accepted":
        if (stale) return void this.expired++;
        if (this.#calls.has(record.id)) return;
        this.#add({
          id: record.id,
          function: record.fn,
          owner: record.owner,
          createdMs: record.at,
          deadline: record.deadline,
          callback: record.callback,
        });
        return;
      case "ended": {
        if (stale) return void this.expired++;
        let call = this.#calls.get(record.id);
        if (!call) {
          call = this.#add({
            id: record.id,
            function: record.fn,
            owner: record.owner,
            createdMs: record.at,
          });
        }
        if (call.endedMs !== undefined || call.owner !== record.owner) return;
        call.endedMs = record.at;
        call.endedBy = record.nonce;
        if (record.outcome) {
          call.outcome = toOutcome(record.id, record.outcome, call.createdMs, record.at);
        } else call.lost = record.lost;
        this.#enders.get(record.id)?.();
        this.#enders.delete(record.id);
        this.#onEnded?.(call);
        return;
      }
      case "claim":
        return this.#claim(record, stale);
      case "settled": {
        if (stale) return void this.expired++;
        const id = slotOf(record.owner, record.key);
        // Its claim left the window (a replica started since): the settled record alone says it all.
        if (!this.#slots.has(id)) this.#newSlot(id, { ...record, hold: record.at });
        const slot = this.#slots.get(id)!;
        if (slot.claim !== record.claim || slot.response) return;
        slot.response = record.response;
        slot.settledAt = record.at;
        slot.finish(record.response);
        return;
      }
      case "released": {
        const id = slotOf(record.owner, record.key);
        const slot = this.#slots.get(id);
        if (!slot || slot.claim !== record.claim || slot.response) return;
        this.#slots.delete(id);
        slot.finish("free");
        return;
      }
    }
  }

  #claim(record: Stamped & { kind: "claim" }, stale: boolean): void {
    const tell = this.#fates.get(record.claim);
    this.#fates.delete(record.claim);
    if (stale) {
      this.expired++;
      return tell?.({ kind: "mismatch" });
    }
    const id = slotOf(record.owner, record.key);
    const slot = this.#slots.get(id);
    if (slot?.claim === record.claim) return tell?.({ kind: "won" });
    // Judged by the records' own times, so that every replica judges alike.
    const free = !slot ||
      (slot.response ? record.at - slot.settledAt! > this.#windowMs : record.at > slot.hold);
    if (free) {
      slot?.finish("free");
      this.#slots.delete(id);
      this.#newSlot(id, record);
      return tell?.({ kind: "won" });
    }
    tell?.(
      slot!.fp === record.fp
        ? { kind: "repeat", response: slot!.done, hold: slot!.hold }
        : { kind: "mismatch" },
    );
  }

  #newSlot(id: string, claim: { claim: string; fp: string; hold: number; at: number }): void {
    const { promise, resolve } = Promise.withResolvers<StoredResponse | "free">();
    this.#slots.set(id, {
      claim: claim.claim,
      fp: claim.fp,
      hold: claim.hold,
      at: claim.at,
      done: promise,
      finish: resolve,
    });
    this.#bound(this.#slots, (s) => s.response !== undefined, (s) => s.finish("free"));
  }

  #add(fields: Omit<LedgerCall, "ended">): LedgerCall {
    const { promise, resolve } = Promise.withResolvers<void>();
    const call: LedgerCall = { ...fields, ended: promise };
    this.#calls.set(call.id, call);
    this.#enders.set(call.id, resolve);
    this.#bound(this.#calls, (c) => c.endedMs !== undefined, (c) => {
      this.#enders.get(c.id)?.();
      this.#enders.delete(c.id);
    });
    return call;
  }

  /** Forgets the oldest done entries past `max`, and the oldest at all past it by a tenth. */
  #bound<T>(map: Map<string, T>, done: (entry: T) => boolean, gone: (entry: T) => void): void {
    if (map.size <= this.#max) return;
    for (const [id, entry] of map) {
      if (map.size <= this.#max) return;
      if (done(entry)) {
        map.delete(id);
        gone(entry);
        this.dropped++;
      }
    }
    for (const [id, entry] of map) {
      if (map.size <= Math.floor(this.#max * 1.1)) return;
      map.delete(id);
      gone(entry);
      this.dropped++;
    }
  }

  /** Forgets ended calls and settled keys older than the window, and claims long past their hold. */
  sweep(): void {
    const edge = this.#now() - this.#windowMs;
    for (const [id, call] of this.#calls) {
      if ((call.endedMs ?? call.deadline ?? call.createdMs) < edge) {
        this.#calls.delete(id);
        this.#enders.get(id)?.();
        this.#enders.delete(id);
      }
    }
    for (const [id, slot] of this.#slots) {
      if ((slot.settledAt ?? slot.hold) < edge) {
        this.#slots.delete(id);
        slot.finish("free");
      }
    }
  }
}

function slotOf(owner: string, key: string): string {
  return `${owner}\n${key}`;
}

function toOutcome(
  id: string,
  stored: StoredOutcome,
  sentWallMs: number,
  endedWallMs: number,
): CallOutcome {
  const times = {
    taskId: id,
    sentAt: 0,
    endedAt: endedWallMs - sentWallMs,
    sentWallMs,
    endedWallMs,
  };
  return stored.kind === "timeout"
    ? { kind: "timeout", ...times }
    : { kind: "reply", reply: stored.reply, ...times };
}
