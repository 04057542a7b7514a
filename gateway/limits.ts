/**
 * The gateway's limits on what one client may make it do: a token bucket
 * and a count of calls in flight per key, failed authentications per
 * client address, a request body read with a size
 * cap and a deadline (a slow client holds nothing for long), and a cap on
 * the nesting depth of JSON bodies (a deep body costs the parser, and every
 * party after it, stack and time out of proportion to its size).
 *
 * @module
 */

/** A token bucket: `rate` tokens a second, at most `burst` kept. */
export class TokenBucket {
  #tokens: number;
  #at: number;

  constructor(
    readonly rate: number,
    readonly burst: number,
    readonly now: () => number = () => performance.now(),
  ) {
    this.#tokens = burst;
    this.#at = now();
  }

  /** Takes a token: 0 when taken, else the seconds until one is there. */
  take(): number {
    const now = this.now();
    this.#tokens = Math.min(this.burst, this.#tokens + (now - this.#at) / 1000 * this.rate);
    this.#at = now;
    if (this.#tokens >= 1) {
      this.#tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - this.#tokens) / this.rate));
  }
}

/** Options of {@linkcode FailureLimit}. */
export interface FailureLimitOptions {
  /** Failures an address may make at once; 0: no limit. @default {20} */
  burst?: number;
  /** Failures a second it earns back. @default {0.2} */
  perSecond?: number;
  /** Addresses remembered; past it the longest-remembered is forgotten. @default {10000} */
  maxAddresses?: number;
  now?: () => number;
}

/**
 * Failed authentications (401, 403) per client address: a bucket of
 * `burst` failures refilled at `perSecond`; an address whose bucket is
 * empty is refused until it refills, whatever key it sends, so guessing
 * keys or scopes from one address is slow and costs the gateway little.
 * Other addresses and every key's own limits are untouched.
 */
export class FailureLimit {
  readonly #burst: number;
  readonly #perSecond: number;
  readonly #max: number;
  readonly #now: () => number;
  readonly #byAddress = new Map<string, { left: number; at: number }>();

  constructor(options: FailureLimitOptions = {}) {
    this.#burst = options.burst ?? 20;
    this.#perSecond = options.perSecond ?? 0.2;
    this.#max = options.maxAddresses ?? 10_000;
    this.#now = options.now ?? (() => performance.now());
  }

  #refilled(address: string): { left: number; at: number } | undefined {
    const entry = this.#byAddress.get(address);
    if (!entry) return undefined;
    const now = this.#now();
    entry.left = Math.min(this.#burst, entry.left + (now - entry.at) / 1000 * this.#perSecond);
    entry.at = now;
    return entry;
  }

  /** Seconds until `address` may try again; 0 when it may now. */
  wait(address: string): number {
    if (this.#burst === 0) return 0;
    const entry = this.#refilled(address);
    if (!entry || entry.left >= 1) return 0;
    return Math.max(1, Math.ceil((1 - entry.left) / this.#perSecond));
  }

  /** Counts a failure of `address`; true when this one used up its allowance. */
  fail(address: string): boolean {
    if (this.#burst === 0) return false;
    let entry = this.#refilled(address);
    if (!entry) {
      if (this.#byAddress.size >= this.#max) {
        this.#byAddress.delete(this.#byAddress.keys().next().value!);
      }
      entry = { left: this.#burst, at: this.#now() };
      this.#byAddress.set(address, entry);
    }
    const before = entry.left;
    entry.left = Math.max(0, entry.left - 1);
    return before >= 1 && entry.left < 1;
  }
}

/** Why a body could not be read. */
export class BodyError extends Error {
  constructor(readonly status: 400 | 408 | 413, message: string) {
    super(message);
    this.name = "BodyError";
  }
}

/**
 * Reads `request`'s body whole, refusing past `maxBytes` (413) or
 * `deadlineMs` after the call (408); the refusal cancels the stream.
 */
export async function readBody(
  request: Request,
  maxBytes: number,
  deadlineMs: number,
): Promise<Uint8Array> {
  const declared = request.headers.get("content-length");
  if (declared !== null && Number(declared) > maxBytes) {
    throw new BodyError(
      413,
      `Cannot accept a body of ${declared} bytes: the limit is ${maxBytes}; send less, or pass large data by reference`,
    );
  }
  if (!request.body) return new Uint8Array();
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new BodyError(
            408,
            `Cannot wait longer than ${deadlineMs} ms for the request body: send it at once`,
          ),
        ),
      deadlineMs,
    );
  });
  try {
    while (true) {
      const { done, value } = await Promise.race([reader.read(), late]);
      if (done) break;
      size += value.byteLength;
      if (size > maxBytes) {
        throw new BodyError(
          413,
          `Cannot accept a body over ${maxBytes} bytes: send less, or pass large data by reference`,
        );
      }
      chunks.push(value);
    }
  } catch (error) {
    reader.cancel().catch(() => {});
    throw error;
  } finally {
    clearTimeout(timer);
  }
  const body = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    body.set(chunk, at);
    at += chunk.byteLength;
  }
  return body;
}

/**
 * How deep `text`'s JSON nests, counted on the text before any parse, so
 * a deep body is refused for no more than a scan; stops past `limit`.
 */
export function jsonDepthOver(text: string, limit: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92) i++; // backslash: skip the escaped character
      else if (c === 34) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 123 || c === 91) {
      if (++depth > limit) return true;
    } else if (c === 125 || c === 93) depth--;
  }
  return false;
}
