/**
 * The gateway's API keys. A key is `gw_<id>_<secret>`: the id (8 random
 * bytes, hex) finds its record, the secret (32 random bytes, base64url) is
 * checked against the record's SHA-256 digest in constant time. Only the
 * digest is stored (the keys file, under the secrets directory, mode 0600),
 * so a leaked keys file lets no one call; the key itself is printed once by
 * `deno task gateway keys add` and never logged.
 *
 * @module
 */

import { timingSafeEqual } from "node:crypto";
import { isEventType, topicMatches, topicPatternProblem } from "../core/contract/cloud_events.ts";

/** Default name of the keys file, in the secrets directory. */
export const KEYS_FILE_NAME = "gateway_keys.json";

/** What one key may do. */
export interface KeyScope {
  /** Function names it may call; `*` for every function. */
  functions: readonly string[];
  /** Topic patterns (`order.*`, `demo.#`) of the event types it may emit. */
  events: readonly string[];
  /** Requests a second it may make on average (token bucket refill). */
  rate: number;
  /** Requests it may make at once above the average (bucket size). */
  burst: number;
  /** Calls it may have running at once through this gateway. */
  inFlight: number;
}

/** One stored key: its id, the digest of its secret and its scope. */
export interface KeyRecord extends KeyScope {
  id: string;
  /** SHA-256 of the secret, hex. */
  sha256: string;
  /** A name for people, such as who holds it. */
  label?: string;
  created: string;
}

/** The keys file. */
export interface KeysFile {
  keys: KeyRecord[];
}

const KEY_PATTERN = /^gw_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;
const FUNCTION_PATTERN = /^(\*|[a-z][a-z0-9_]{0,62})$/;

/** Defaults of a new key's limits. */
export const DEFAULT_SCOPE_LIMITS = { rate: 50, burst: 100, inFlight: 100 } as const;

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function base64url(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_")
    .replace(/=+$/, "");
}

async function sha256(text: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
}

/** Checks a scope's names and numbers; a `TypeError` or `RangeError` says what to fix. */
export function checkScope(scope: KeyScope): void {
  if (scope.functions.length === 0 && scope.events.length === 0) {
    throw new TypeError(
      "Cannot make a key that may do nothing: give --functions task_a,task_b (or '*') and/or --events 'order.*'",
    );
  }
  for (const name of scope.functions) {
    if (!FUNCTION_PATTERN.test(name)) {
      throw new TypeError(
        `Cannot scope a key to function ${
          JSON.stringify(name)
        }: give function names of lower_snake_case, or '*' for all`,
      );
    }
  }
  for (const pattern of scope.events) {
    const problem = topicPatternProblem(pattern);
    if (problem) throw new TypeError(`Cannot scope a key to events '${pattern}': ${problem}`);
  }
  for (const field of ["rate", "burst", "inFlight"] as const) {
    const value = scope[field];
    if (!Number.isFinite(value) || value <= 0 || value > 1_000_000) {
      throw new RangeError(
        `Cannot make a key with ${field} ${value}: give a number above 0 and at most 1000000`,
      );
    }
  }
}

/** A new key and its record: the key is shown once and never stored. */
export async function newKey(
  scope: KeyScope,
  label?: string,
): Promise<{ key: string; record: KeyRecord }> {
  checkScope(scope);
  const id = hex(crypto.getRandomValues(new Uint8Array(8)));
  const secret = base64url(crypto.getRandomValues(new Uint8Array(32)));
  const record: KeyRecord = {
    id,
    sha256: hex(await sha256(secret)),
    functions: [...scope.functions],
    events: [...scope.events],
    rate: scope.rate,
    burst: scope.burst,
    inFlight: scope.inFlight,
    ...(label !== undefined && { label }),
    created: new Date().toISOString(),
  };
  return { key: `gw_${id}_${secret}`, record };
}

/** Parses a keys file's text; a `SyntaxError` or `TypeError` names the bad entry. */
export function parseKeysFile(text: string, file: string): KeysFile {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new SyntaxError(
      `Cannot read keys file '${file}' as it is not JSON (${
        (error as Error).message
      }): remove it and add the keys again with 'deno task gateway keys add'`,
    );
  }
  const keys = (parsed as KeysFile)?.keys;
  if (!Array.isArray(keys)) {
    throw new TypeError(`Cannot read keys file '${file}' as it has no 'keys' list`);
  }
  for (const [index, record] of keys.entries()) {
    const ok = record && typeof record.id === "string" && /^[0-9a-f]{16}$/.test(record.id) &&
      typeof record.sha256 === "string" && /^[0-9a-f]{64}$/.test(record.sha256) &&
      Array.isArray(record.functions) && Array.isArray(record.events);
    if (!ok) {
      throw new TypeError(
        `Cannot read key ${
          index + 1
        } of '${file}': it needs an id (16 hex), sha256 (64 hex), functions and events`,
      );
    }
    checkScope(record);
  }
  return { keys };
}

/** Reads a keys file; a missing file is an empty one. */
export async function readKeysFile(file: string): Promise<KeysFile> {
  try {
    return parseKeysFile(await Deno.readTextFile(file), file);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return { keys: [] };
    throw error;
  }
}

/** Adds `record` to the keys file, written whole at once with mode 0600. */
export async function addKeyToFile(file: string, record: KeyRecord): Promise<void> {
  const current = await readKeysFile(file);
  current.keys.push(record);
  const temporary = `${file}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  try {
    await Deno.writeTextFile(temporary, JSON.stringify(current, null, 2) + "\n", { mode: 0o600 });
    await Deno.chmod(temporary, 0o600);
    await Deno.rename(temporary, file);
  } catch (error) {
    await Deno.remove(temporary).catch(() => {});
    throw error;
  }
}

/** The keys a gateway accepts, found by id and checked in constant time. */
export class KeyRing {
  readonly #byId: Map<string, { record: KeyRecord; digest: Uint8Array }>;

  constructor(keys: readonly KeyRecord[]) {
    this.#byId = new Map(keys.map((record) => [record.id, {
      record,
      digest: Uint8Array.from(record.sha256.match(/../g)!.map((h) => parseInt(h, 16))),
    }]));
  }

  get size(): number {
    return this.#byId.size;
  }

  /** The record of `key`, or `undefined` for a key that is malformed, unknown or wrong. */
  async verify(key: string): Promise<KeyRecord | undefined> {
    const match = KEY_PATTERN.exec(key);
    // The same work for a malformed or unknown id as for a known one.
    const digest = await sha256(match?.[2] ?? key);
    const entry = match ? this.#byId.get(match[1]) : undefined;
    const expected = entry?.digest ?? new Uint8Array(32);
    const equal = timingSafeEqual(digest, expected);
    return entry && equal ? entry.record : undefined;
  }
}

/** Whether `record` may call function `name`. */
export function mayCall(record: KeyScope, name: string): boolean {
  return record.functions.includes("*") || record.functions.includes(name);
}

/** Whether `record` may emit events of `type`. */
export function mayEmit(record: KeyScope, type: string): boolean {
  return isEventType(type) && record.events.some((pattern) => topicMatches(pattern, type));
}
