/**
 * Bounded JSON decoding: the size is checked before anything is read, the
 * nesting depth is checked by one pass over the bytes before `JSON.parse`
 * builds anything, and the text must be UTF-8. So whatever a request holds,
 * decoding it costs at most a small multiple of `maxBytes`.
 *
 * @module
 */

import { type Parsed, refuse } from "./message.ts";

/** Deepest nesting of objects and arrays a request body may have. */
export const MAX_JSON_DEPTH = 64;

/** Options for {@linkcode decodeJson}. */
export interface DecodeJsonOptions {
  /** What is decoded, for messages: "the request". */
  what: string;
  /** Largest body accepted, in bytes. */
  maxBytes: number;
  /**
   * Deepest nesting accepted.
   * @default {MAX_JSON_DEPTH}
   */
  maxDepth?: number;
}

const OPEN_OBJECT = 0x7b;
const OPEN_ARRAY = 0x5b;
const CLOSE_OBJECT = 0x7d;
const CLOSE_ARRAY = 0x5d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * The deepest nesting of `bytes` read as JSON, counting only brackets
 * outside strings; stops counting past `limit`. Malformed input gives some
 * number: `JSON.parse` reports what is wrong with it afterwards.
 */
export function jsonDepth(bytes: Uint8Array, limit: number): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i];
    if (inString) {
      if (byte === BACKSLASH) i++;
      else if (byte === QUOTE) inString = false;
      continue;
    }
    if (byte === QUOTE) inString = true;
    else if (byte === OPEN_OBJECT || byte === OPEN_ARRAY) {
      if (++depth > deepest && (deepest = depth) > limit) return deepest;
    } else if (byte === CLOSE_OBJECT || byte === CLOSE_ARRAY) depth--;
  }
  return deepest;
}

const decoder = new TextDecoder("utf-8", { fatal: true });

/** Decodes `body` as JSON within the bounds of `options`; never throws. */
export function decodeJson(body: Uint8Array, options: DecodeJsonOptions): Parsed<unknown> {
  const { what, maxBytes } = options;
  const maxDepth = options.maxDepth ?? MAX_JSON_DEPTH;
  if (body.byteLength > maxBytes) {
    return refuse(
      "MessageTooLarge",
      `Cannot accept ${what} as its body has ${body.byteLength} bytes: the limit is ${maxBytes}`,
    );
  }
  if (body.byteLength === 0) {
    return refuse("InvalidJson", `Cannot parse ${what} as its body is empty: send a JSON object`);
  }
  if (jsonDepth(body, maxDepth) > maxDepth) {
    return refuse(
      "InvalidJson",
      `Cannot parse ${what} as its JSON nests deeper than ${maxDepth} levels: flatten it`,
    );
  }
  let text: string;
  try {
    text = decoder.decode(body);
  } catch {
    return refuse("InvalidJson", `Cannot parse ${what} as its body is not UTF-8 text: send JSON`);
  }
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (error) {
    const detail = error instanceof Error ? error.message : String(error);
    return refuse("InvalidJson", `Cannot parse ${what} as JSON: ${detail}`);
  }
}

/**
 * Whether `text` is exactly one JSON value, nothing before or after it: the
 * check a worker makes of a result that came from a function's sandbox
 * before it puts it into a reply, where a second value (or a broken one)
 * could forge the reply's own fields. Its size must already be bounded.
 */
export function isOneJsonValue(text: string): boolean {
  // The runtime's own JSON.parse: a function cannot reach it from its sandbox.
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}
