/**
 * Dead letters on the wire: what a worker writes on a request it refuses or
 * gives up on ({@linkcode encodeDeadLetter}), what RabbitMQ writes on one it
 * dead-letters itself, how a tool reads either ({@linkcode parseDeadLetter}),
 * and what a replay marks on the request it sends again
 * ({@linkcode replayHeaders}). Anyone who may publish to a dead-letter
 * queue can forge a letter, so every text read off one is bounded; and
 * every value a worker writes is bounded, so a letter always fits in one
 * AMQP frame. See docs/wire-contract.md, "Dead letters".
 *
 * @module
 */

import {
  boundText,
  MAX_ERROR_MESSAGE_CHARS,
  MAX_ERROR_TYPE_CHARS,
  type Message,
  type TaskError,
} from "./message.ts";
import {
  ATTEMPT_HEADER,
  DELIVERY_COUNT_HEADER,
  PRIOR_DELIVERIES_HEADER,
  queueOfDeadLetterQueue,
  SENDER_HEADER,
  SENT_AT_HEADER,
} from "./names.ts";

/**
 * Why a request ended in `<queue>.dlq`, as in the `x-dlq-reason` header (or,
 * for letters the broker itself dead-lettered, its `x-death` reason):
 *
 * - `rejected`: it broke the contract (content type, size, JSON, fields);
 * - `unauthenticated`: its sender (`user_id`) may not call the function;
 * - `invalid_reply_to`: its `reply_to` is not a reply destination
 *   (`isReplyDestination`), so it never ran and got no reply;
 * - `exhausted`: it failed on every attempt its retry policy allowed;
 * - `non_retryable`: it failed in a way another attempt cannot fix;
 * - `expired`: its deadline passed before it could run (or run again);
 * - `delivery_limit`: it was delivered `DELIVERY_LIMIT` times and never
 *   settled, because the worker or its sandbox died (or the worker could
 *   not settle it) each time;
 * - `hop_limit`: an event that went through `MAX_EVENT_HOPS` functions;
 * - `untriggered`: an event that came through the events exchange with a
 *   type none of the function's triggers matches (a binding left from a
 *   trigger since removed);
 * - `cancelled`: its call was cancelled (`cancel.ts`): it never started, or
 *   its running attempt was stopped.
 */
export type DeadLetterReason =
  | "rejected"
  | "unauthenticated"
  | "invalid_reply_to"
  | "exhausted"
  | "non_retryable"
  | "expired"
  | "delivery_limit"
  | "hop_limit"
  | "untriggered"
  | "cancelled";

/** Every {@linkcode DeadLetterReason}. */
export const DEAD_LETTER_REASONS: readonly DeadLetterReason[] = [
  "rejected",
  "unauthenticated",
  "invalid_reply_to",
  "exhausted",
  "non_retryable",
  "expired",
  "delivery_limit",
  "hop_limit",
  "untriggered",
  "cancelled",
];

/** What every header a worker writes on a dead letter starts with; only the runtime writes them. */
export const DEAD_LETTER_HEADER_PREFIX = "x-dlq-";

/** Headers of a dead letter written by a worker. */
export const DEAD_LETTER_HEADERS = {
  reason: "x-dlq-reason",
  errorType: "x-dlq-error-type",
  errorMessage: "x-dlq-error-message",
  attempts: "x-dlq-attempts",
  deliveries: "x-dlq-deliveries",
  queue: "x-dlq-queue",
  worker: "x-dlq-worker",
  sender: "x-dlq-sender",
  /**
   * The broker users the worker accepted requests from when it wrote the
   * letter, comma-separated (`*`: anyone): what a replay checks the
   * letter's sender against.
   */
  allowedSenders: "x-dlq-allowed-senders",
  at: "x-dlq-at",
  /** The size of a body too large to keep, which the letter goes without. */
  bodyBytes: "x-dlq-body-bytes",
  /** Set on what a worker republishes when the request's headers were over budget, and left out. */
  headersDropped: "x-dlq-headers-dropped",
} as const;

/** Whether a header is one only the runtime writes on a dead letter (`x-dlq-*`). */
export function isDeadLetterHeader(name: string): boolean {
  return name.startsWith(DEAD_LETTER_HEADER_PREFIX);
}

/** Headers RabbitMQ writes on a message it dead-letters itself (expired, over the delivery limit). */
export const BROKER_DEATH_HEADERS = {
  /** A table per death: its `reason`, `queue` and `count`. */
  deaths: "x-death",
  firstReason: "x-first-death-reason",
  firstQueue: "x-first-death-queue",
} as const;

/**
 * Header a replayed dead letter carries (`deno task dlq --replay`, the
 * dashboard): the broker user who sent the original request. The replay
 * goes out as the operator, whom functions accept; a worker runs it only if
 * it accepts this sender too, so a replay never launders a request from a
 * sender the function refuses.
 */
export const REPLAYED_SENDER_HEADER = "x-replayed-sender";

/** Header a replayed dead letter carries: the dead-letter queue it came from. */
export const REPLAYED_FROM_HEADER = "x-replayed-from";

/** Header a replayed dead letter carries: when it was replayed (ISO 8601). */
export const REPLAYED_AT_HEADER = "x-replayed-at";

/** Longest worker or user name a worker writes into a letter. */
const MAX_NAME_CHARS = 128;

/** Longest list of allowed senders a worker writes into a letter. */
const MAX_SENDERS_CHARS = 1024;

/** What a worker records on a request it dead-letters. */
export interface DeadLetterRecord {
  reason: DeadLetterReason;
  error: TaskError;
  attempts: number;
  /** The function's queue. */
  queue: string;
  /** The worker that writes the letter. */
  worker: string;
  /** The broker users the worker accepts requests from; `*` for anyone. */
  allowedSenders: Iterable<string>;
  /** The broker user who sent the request, when known. */
  sender?: string;
  /** How often the broker delivered it, for `delivery_limit`. */
  deliveries?: number;
  /**
   * Keep only the headers, not the body: for a body larger than the worker
   * accepts, which no replay could run and which would only double the
   * memory and the broker's disk it takes.
   */
  dropBody?: boolean;
  /** When it is written. @default {new Date()} */
  at?: Date;
}

/**
 * The dead letter of `request`: its body (unless dropped) and properties,
 * with the record's headers added over its own. `request` is the request
 * as it is to be republished: the caller decides which of its headers and
 * properties travel on.
 */
export function encodeDeadLetter(request: Message, record: DeadLetterRecord): Message {
  const headers: Record<string, unknown> = {
    ...request.properties.headers,
    [DEAD_LETTER_HEADERS.reason]: record.reason,
    [DEAD_LETTER_HEADERS.errorType]: boundText(record.error.type, MAX_ERROR_TYPE_CHARS),
    [DEAD_LETTER_HEADERS.errorMessage]: boundText(record.error.message, MAX_ERROR_MESSAGE_CHARS),
    [DEAD_LETTER_HEADERS.attempts]: record.attempts,
    [DEAD_LETTER_HEADERS.queue]: record.queue,
    [DEAD_LETTER_HEADERS.worker]: boundText(record.worker, MAX_NAME_CHARS),
    [DEAD_LETTER_HEADERS.allowedSenders]: boundText(
      [...record.allowedSenders].sort().join(","),
      MAX_SENDERS_CHARS,
    ),
    [DEAD_LETTER_HEADERS.at]: (record.at ?? new Date()).toISOString(),
  };
  if (record.sender !== undefined) {
    headers[DEAD_LETTER_HEADERS.sender] = boundText(record.sender, MAX_NAME_CHARS);
  }
  if (record.deliveries !== undefined) headers[DEAD_LETTER_HEADERS.deliveries] = record.deliveries;
  if (record.dropBody) headers[DEAD_LETTER_HEADERS.bodyBytes] = request.body.byteLength;
  return {
    body: record.dropBody ? new Uint8Array() : request.body,
    properties: { ...request.properties, headers },
  };
}

/** A dead letter, as its headers describe it. */
export interface DeadLetter {
  /**
   * Why it is one: the worker's `x-dlq-reason` (a {@linkcode DeadLetterReason}),
   * else the broker's own (`x-first-death-reason`, or the first `x-death`
   * entry's: `expired`, `delivery_limit`, `rejected`), else `unknown`.
   */
  reason: string;
  errorType: string;
  errorMessage: string;
  attempts: number | null;
  /** How often the broker delivered it without it being settled, where known. */
  deliveries: number | null;
  /** The function queue its dead-letter queue belongs to. */
  queue: string;
  worker: string | null;
  /** When it was dead-lettered (ISO 8601). */
  at: string | null;
  taskId: string | null;
  /** The broker user who published it (`user_id`, verified by RabbitMQ). */
  userId: string | null;
  /** The sender of the original request, as its worker recorded it (`x-dlq-sender`). */
  sender: string | null;
  /** The original body as text (lossy for bytes that are not UTF-8). */
  body: string;
}

/**
 * Longest text {@linkcode parseDeadLetter} takes from a letter's headers and
 * properties, by field. Anyone who may publish through the default exchange
 * can forge a letter with some 120 KB of headers (one frame): bounded here,
 * nothing a tool or the dashboard shows of a letter grows with them.
 */
export const DEAD_LETTER_TEXT_LIMITS = {
  reason: 32,
  errorType: MAX_ERROR_TYPE_CHARS,
  errorMessage: MAX_ERROR_MESSAGE_CHARS,
  worker: MAX_NAME_CHARS,
  sender: MAX_NAME_CHARS,
  at: 40,
  /** AMQP short strings (message id, user id) hold at most 255 bytes. */
  id: 255,
} as const;

function text(value: unknown, max: number): string | null {
  if (value === undefined || value === null) return null;
  // A header may be a number, bytes (decoded by String) or a table.
  return boundText(typeof value === "string" ? value : String(value), max);
}

function count(value: unknown): number | null {
  const number = Number(value);
  return value !== undefined && value !== null && Number.isInteger(number) ? number : null;
}

/** The reason the broker wrote when it dead-lettered a message itself. */
function brokerReason(headers: Record<string, unknown>): string | null {
  const max = DEAD_LETTER_TEXT_LIMITS.reason;
  const first = text(headers[BROKER_DEATH_HEADERS.firstReason], max);
  if (first) return first;
  const deaths = headers[BROKER_DEATH_HEADERS.deaths];
  if (Array.isArray(deaths) && deaths.length > 0) {
    return text((deaths[0] as Record<string, unknown> | null)?.reason, max);
  }
  return null;
}

/** Reads a letter taken from the dead-letter queue `deadLetterQueue`; every text bounded. */
export function parseDeadLetter(message: Message, deadLetterQueue: string): DeadLetter {
  const headers = message.properties.headers ?? {};
  const limits = DEAD_LETTER_TEXT_LIMITS;
  const reason = text(headers[DEAD_LETTER_HEADERS.reason], limits.reason) ??
    brokerReason(headers) ?? "unknown";
  const { messageId, correlationId, userId } = message.properties;
  return {
    reason,
    errorType: text(headers[DEAD_LETTER_HEADERS.errorType], limits.errorType) ??
      (headers[BROKER_DEATH_HEADERS.deaths] !== undefined ? "Broker" : "unknown"),
    errorMessage: text(headers[DEAD_LETTER_HEADERS.errorMessage], limits.errorMessage) ?? "",
    attempts: count(headers[DEAD_LETTER_HEADERS.attempts]),
    deliveries: count(headers[DEAD_LETTER_HEADERS.deliveries]) ??
      count(headers[DELIVERY_COUNT_HEADER]),
    queue: queueOfDeadLetterQueue(deadLetterQueue) ?? deadLetterQueue.replace(/\.dlq$/, ""),
    worker: text(headers[DEAD_LETTER_HEADERS.worker], limits.worker),
    at: text(headers[DEAD_LETTER_HEADERS.at], limits.at),
    taskId: text(messageId ?? correlationId, limits.id),
    userId: text(userId, limits.id),
    sender: text(headers[DEAD_LETTER_HEADERS.sender], limits.sender),
    body: new TextDecoder().decode(message.body),
  };
}

// A replay drops the worker's and the broker's records of the death, the
// attempt count (attempts start again at 1), and a retry's sender, which
// only the worker's own user may claim.
const DEATH_HEADER = /^x-(dlq-|death$|first-death-|last-death-)/;
const RUNTIME_HEADERS = new Set([
  ATTEMPT_HEADER,
  SENDER_HEADER,
  DELIVERY_COUNT_HEADER,
  PRIOR_DELIVERIES_HEADER,
]);

/** Options for {@linkcode replayHeaders}. */
export interface ReplayHeadersOptions {
  /** The dead-letter queue the letter came from. */
  from: string;
  /** The original request's sender, whom the function's worker must accept. */
  sender: string;
  /** When it is replayed. @default {Date.now()} */
  now?: number;
}

/**
 * The headers of a dead letter's replay, a new request: the letter's own
 * without the records of its death and the runtime's headers of earlier
 * attempts, its `x-sent-at` (if any) restamped, and the replay's marks.
 */
export function replayHeaders(
  letterHeaders: Record<string, unknown> | undefined,
  options: ReplayHeadersOptions,
): Record<string, unknown> {
  const now = options.now ?? Date.now();
  const headers = Object.fromEntries(
    Object.entries(letterHeaders ?? {}).filter(([key]) =>
      !DEATH_HEADER.test(key) && !RUNTIME_HEADERS.has(key)
    ),
  );
  // Its wait in the queue (a worker's span) starts now, as a retry's does.
  if (headers[SENT_AT_HEADER] !== undefined) headers[SENT_AT_HEADER] = now;
  headers[REPLAYED_FROM_HEADER] = options.from;
  headers[REPLAYED_AT_HEADER] = new Date(now).toISOString();
  // The worker runs the copy only if it accepts this sender itself.
  headers[REPLAYED_SENDER_HEADER] = options.sender;
  return headers;
}
