/**
 * Checks on a delivery's envelope that come before its body is read: size,
 * content type, content encoding and the size of its headers. Each costs
 * constant or linear time in what the broker already delivered, and none
 * parses the body.
 *
 * @module
 */

import {
  boundText,
  CONTENT_TYPE,
  isJsonContentType,
  type Message,
  type Parsed,
  refuse,
} from "./message.ts";

/** Requests larger than this are refused unless a worker raises its limit (`MAX_MESSAGE_BYTES`). */
export const DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024;

/**
 * Most bytes of headers a request may carry. Workers copy a request's
 * headers onto its retries and dead letters, adding their own (at most
 * {@linkcode MAX_RUNTIME_HEADER_BYTES}), so what they publish stays far below
 * RabbitMQ's frame size (128 KiB), which a header frame may not exceed.
 */
export const MAX_HEADER_BYTES = 16 * 1024;

/** Most bytes of headers the runtime itself adds to a message it republishes. */
export const MAX_RUNTIME_HEADER_BYTES = 4 * 1024;

const ENCODINGS = new Set(["utf-8", "utf8", "identity"]);

/**
 * About how many bytes `value` takes in an AMQP field table, counting at most
 * `budget` of them: the walk stops once it is over, so a huge or deeply
 * nested header costs no more than the budget to measure.
 */
export function headerBytes(value: unknown, budget: number): number {
  let total = 0;
  const stack: unknown[] = [value];
  while (stack.length > 0 && total <= budget) {
    const item = stack.pop();
    if (typeof item === "string") total += 5 + item.length * 3;
    else if (item instanceof Uint8Array) total += 5 + item.byteLength;
    else if (Array.isArray(item)) {
      total += 5;
      for (let i = 0; i < item.length && i <= budget; i++) stack.push(item[i]);
    } else if (typeof item === "object" && item !== null) {
      total += 5;
      let keys = 0;
      for (const key in item) {
        if (keys++ > budget) break;
        total += 1 + key.length * 3;
        stack.push((item as Record<string, unknown>)[key]);
      }
    } else total += 9;
  }
  return total;
}

/** Options for {@linkcode checkEnvelope}. */
export interface CheckEnvelopeOptions {
  /** Largest body accepted, in bytes. */
  maxBytes: number;
  /** What is checked, for messages: "the request". */
  what?: string;
  /**
   * Check the content type too; a Celery request's is checked with its
   * protocol, which words the refusal for Celery clients.
   * @default {true}
   */
  contentType?: boolean;
}

/**
 * Refuses a message before its body is read when it is too large, not JSON,
 * compressed or otherwise encoded, or carries too many header bytes.
 */
export function checkEnvelope(message: Message, options: CheckEnvelopeOptions): Parsed<true> {
  const what = options.what ?? "the request";
  const { body, properties } = message;
  if (body.byteLength > options.maxBytes) {
    return refuse(
      "MessageTooLarge",
      `Cannot accept ${what} as its body has ${body.byteLength} bytes: the limit is ${options.maxBytes}`,
    );
  }
  const { contentType, contentEncoding } = properties;
  const checkType = options.contentType ?? true;
  if (checkType && !isJsonContentType(contentType)) {
    const actual = contentType === undefined ? "missing" : `'${boundText(contentType, 60)}'`;
    return refuse(
      "InvalidContentType",
      `Cannot accept ${what} as its content_type is ${actual}: set it to '${CONTENT_TYPE}'`,
    );
  }
  const charset = contentType?.match(/;\s*charset\s*=\s*"?([^";\s]+)/i)?.[1].toLowerCase();
  if (checkType && charset !== undefined && charset !== "utf-8" && charset !== "utf8") {
    return refuse(
      "InvalidContentType",
      `Cannot accept ${what} as its charset is '${
        boundText(charset, 30)
      }': send UTF-8 JSON (charset=utf-8, or no charset)`,
    );
  }
  if (contentEncoding !== undefined && !ENCODINGS.has(contentEncoding.toLowerCase())) {
    return refuse(
      "InvalidContentEncoding",
      `Cannot accept ${what} as its content_encoding is '${
        boundText(contentEncoding, 60)
      }': workers never decode compressed bodies; send plain UTF-8 JSON without content_encoding`,
    );
  }
  if (properties.headers !== undefined) {
    const size = headerBytes(properties.headers, MAX_HEADER_BYTES);
    if (size > MAX_HEADER_BYTES) {
      return refuse(
        "HeadersTooLarge",
        `Cannot accept ${what} as its headers take more than ${MAX_HEADER_BYTES} bytes: send fewer or smaller headers`,
      );
    }
  }
  return { ok: true, value: true };
}
