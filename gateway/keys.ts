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

/**
 * Writes the keys file. A new file is written whole and renamed into
 * place, mode 0600. An existing one is rewritten in place, keeping its
 * inode, owner and mode: a container that mounts the file alone (a compose
 * secret) keeps the inode it mounted, and would never see a renamed file.
 * A gateway that reads it half-written finds no JSON and keeps its keys
 * until its next look (watchKeysFile).
 */
async function writeKeysFile(file: string, keys: KeysFile): Promise<void> {
  const text = JSON.stringify(keys, null, 2) + "\n";
  try {
    await Deno.lstat(file);
    await Deno.writeTextFile(file, text);
    return;
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  const temporary = `${file}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  try {
    await Deno.writeTextFile(temporary, text, { mode: 0o600 });
    await Deno.chmod(temporary, 0o600);
    await Deno.rename(temporary, file);
  } catch (error) {
    await Deno.remove(temporary).catch(() => {});
    throw error;
  }
}

/** Adds `record` to the keys file. */
export async function addKeyToFile(file: string, record: KeyRecord): Promise<void> {
  const current = await readKeysFile(file);
  current.keys.push(record);
  await writeKeysFile(file, current);
}

/** Removes the key of `id` from the keys file; rejects with a `RangeError` when it has none. */
export async function removeKeyFromFile(file: string, id: string): Promise<void> {
  const current = await readKeysFile(file);
  const kept = current.keys.filter((record) => record.id !== id);
  if (kept.length === current.keys.length) {
    throw new RangeError(
      `Cannot remove key '${
        id.slice(0, 40)
      }' as ${file} has no such key: see 'deno task gateway keys list'`,
    );
  }
  await writeKeysFile(file, { keys: kept });
}

/** The keys a gateway accepts, found by id and checked in constant time. */
export class KeyRing {
  #byId: Map<string, { record: KeyRecord; digest: Uint8Array }>;

  constructor(keys: readonly KeyRecord[]) {
    this.#byId = KeyRing.#index(keys);
  }

  static #index(keys: readonly KeyRecord[]) {
    return new Map(keys.map((record) => [record.id, {
      record,
      digest: Uint8Array.from(record.sha256.match(/../g)!.map((h) => parseInt(h, 16))),
    }]));
  }

  /** Takes `keys` in place of the ring's: a key not among them fails its next request. */
  replace(keys: readonly KeyRecord[]): void {
    this.#byId = KeyRing.#index(keys);
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

/** Options of {@linkcode watchKeysFile}. */
export interface WatchKeysOptions {
  /** How often the file's modification time is looked at. @default {2000} */
  intervalMs?: number;
  log?: (line: string) => void;
}

/** A keys file's ring, kept equal to the file. */
export interface KeysWatch {
  ring: KeyRing;
  /** Reads the file now; resolves with whether the ring took it. */
  reload(): Promise<boolean>;
  /** Stops looking; resolves once a look or read under way has ended. */
  stop(): Promise<void>;
}

/**
 * Reads `file` into a ring (a missing file is an empty one; a bad file
 * rejects, as at a start nothing else can be served) and keeps the ring
 * equal to the file: reads it again whenever its modification time, size
 * or inode changes (looked at every `intervalMs`) and whenever
 * {@linkcode KeysWatch.reload} is called (SIGHUP). Then a file that cannot
 * be read, or is not a keys file, or is gone, leaves the ring as it was,
 * and the reason is logged once per change of the file; it is read again
 * at the next look, so a file caught half-written is taken once whole.
 */
export async function watchKeysFile(
  file: string,
  options: WatchKeysOptions = {},
): Promise<KeysWatch> {
  const { intervalMs = 2_000, log = () => {} } = options;
  const stampOf = async () => {
    try {
      const info = await Deno.stat(file);
      return `${info.mtime?.getTime()}:${info.size}:${info.ino}`;
    } catch (error) {
      return error instanceof Deno.errors.NotFound ? "missing" : `error:${(error as Error).name}`;
    }
  };
  // The stamp before the read: a change in between is seen at the first look.
  let taken = await stampOf();
  const ring = new KeyRing((await readKeysFile(file)).keys);
  let refused = "";
  let last: Promise<unknown> = Promise.resolve();
  let pending = 0;
  const read = async (): Promise<boolean> => {
    const stamp = await stampOf();
    try {
      // Not readKeysFile: a missing file is no reason to drop every key.
      const { keys } = parseKeysFile(await Deno.readTextFile(file), file);
      ring.replace(keys);
      if (stamp !== taken) log(`gateway: keys file ${file} read again: ${keys.length} key(s)`);
      taken = stamp;
      refused = "";
      return true;
    } catch (error) {
      if (stamp !== refused) {
        refused = stamp;
        log(
          `gateway: kept the ${ring.size} key(s) in use as ${file} cannot be read: ${
            error instanceof Deno.errors.NotFound ? "it is gone" : (error as Error).message
          }`,
        );
      }
      return false;
    }
  };
  // Each reload reads after the one before has ended: a SIGHUP sent after
  // a write never gets the answer of a read that began before it.
  const reload = () => {
    pending++;
    const next = last.then(read).finally(() => pending--);
    last = next;
    return next;
  };
  let looking: Promise<unknown> = Promise.resolve();
  const timer = setInterval(() => {
    if (pending > 0) return;
    looking = stampOf().then((stamp) => stamp !== taken ? reload() : undefined);
  }, intervalMs);
  const stop = async () => {
    clearInterval(timer);
    await Promise.allSettled([looking, last]);
  };
  return { ring, reload, stop };
}
