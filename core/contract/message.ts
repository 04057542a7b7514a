/**
 * What travels on the broker: a raw body and AMQP properties, and the
 * outcome of checking either. Shared by every other part of the contract.
 *
 * @module
 */

/** The only content type a request or a reply may have. */
export const CONTENT_TYPE = "application/json";

/**
 * AMQP basic properties, named as in the AMQP 0-9-1 spec but in camelCase.
 * Brokers carry them unchanged from publisher to consumer.
 */
export interface MessageProperties {
  contentType?: string;
  /** Only absent, `utf-8` or `identity` are accepted: a worker never decompresses. */
  contentEncoding?: string;
  correlationId?: string;
  replyTo?: string;
  messageId?: string;
  type?: string;
  /**
   * The publishing broker user. RabbitMQ refuses a message whose `user_id`
   * is not the user of the connection that published it, so a receiver can
   * trust it (see docs/wire-contract.md, "Senders").
   */
  userId?: string;
  /** Milliseconds, as a decimal string: the broker drops (dead-letters) the message when it passes. */
  expiration?: string;
  /** Seconds since the epoch, as AMQP defines it. */
  timestamp?: number;
  persistent?: boolean;
  headers?: Record<string, unknown>;
}

/** A message as published or received: raw body plus properties. */
export interface Message {
  body: Uint8Array;
  properties: MessageProperties;
}

/** Why something was refused, as carried by an error reply: a stable type and a message. */
export interface TaskError {
  /** A stable name for the kind of failure, for example `WrongFunction`. */
  type: string;
  /** What went wrong and, where it helps, how to fix it. */
  message: string;
}

/**
 * The outcome of checking untrusted input: a value, or an error a caller can
 * act on (with, for a request, the function it names when that is a valid
 * name, for the error reply's `task`).
 */
export type Parsed<T> = { ok: true; value: T } | { ok: false; error: TaskError; task?: string };

/** A refusal of type `type`, its message bounded (see {@linkcode boundText}). */
export function refuse(type: string, message: string): { ok: false; error: TaskError } {
  return { ok: false, error: { type, message: boundText(message, MAX_ERROR_MESSAGE_CHARS) } };
}

/**
 * The error type of a task that ended at its caller's deadline, or was
 * refused because the deadline had passed: the caller no longer waits.
 */
export const DEADLINE_EXCEEDED = "DeadlineExceeded";

/** The error type of an attempt that outran its function's `timeoutMs`. */
export const TASK_TIMEOUT = "TaskTimeout";

/** Longest error message the runtime writes anywhere: replies, logs, headers. */
export const MAX_ERROR_MESSAGE_CHARS = 512;

/** Longest error type the runtime writes anywhere. */
export const MAX_ERROR_TYPE_CHARS = 64;

/**
 * `text` cut to at most `max` characters, with a marker saying how much was
 * cut. Everything the runtime echoes from a request goes through this, so a
 * hostile value never grows a reply, a log line or a header.
 */
export function boundText(text: string, max: number): string {
  if (text.length <= max) return text;
  const marker = `... (${text.length - max} more characters)`;
  return text.slice(0, Math.max(0, max - marker.length)) + marker;
}

/** A short description of an untrusted value for an error message; never echoes much of it. */
export function describeValue(value: unknown): string {
  if (value === undefined) return "missing";
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "string") return `the string ${JSON.stringify(boundText(value, 40))}`;
  if (typeof value === "number") return `the number ${boundText(String(value), 24)}`;
  return `${typeof value === "object" ? "an" : "a"} ${typeof value}`;
}

/** Whether `value` is a JSON object (not null, not an array). */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Whether a content type names JSON, ignoring parameters such as `charset`. */
export function isJsonContentType(contentType: string | undefined): boolean {
  return contentType?.split(";")[0].trim().toLowerCase() === CONTENT_TYPE;
}
