/**
 * Cancellation of calls. A caller (or an operator) publishes a cancellation
 * to {@linkcode CANCELLATIONS_STREAM}, a RabbitMQ stream: every worker
 * reads it, those running now as it is written and those that start later
 * from {@linkcode CANCELLATION_RETENTION_MS} back, so a cancellation
 * reaches every replica, including one that was not listening when it was
 * sent. A worker keeps the cancellations it has read until the call's
 * deadline (at most the retention), and:
 *
 * - a request it receives later for a cancelled call never starts: it is
 *   dead-lettered (reason `cancelled`) and answered with the error type
 *   {@linkcode CANCELLED};
 * - an attempt it runs now is stopped: its handler's `AbortSignal` fires,
 *   and a sandbox that does not yield within a second is ended; the caller
 *   gets the same `Cancelled` answer.
 *
 * A cancellation counts only from the broker user that sent the call, or
 * from an operator or administrator ({@linkcode mayCancel}): RabbitMQ
 * checks the `user_id` of both messages. A worker that acted on a
 * cancellation, or knows the call, answers on the cancellation's
 * `reply_to`, so that the canceller learns what happened
 * ({@linkcode CancelAnswer}). See docs/wire-contract.md, "Cancellation".
 *
 * @module
 */

import { decodeJson } from "./json.ts";
import {
  boundText,
  CONTENT_TYPE,
  describeValue,
  isPlainObject,
  type Message,
  type Parsed,
  refuse,
} from "./message.ts";
import { ADMIN_USER, OPERATOR_USER } from "./users.ts";

/** The stream every worker reads cancellations from. */
export const CANCELLATIONS_STREAM = "tasks.cancellations";

/**
 * How far back the stream keeps cancellations, and how long a worker keeps
 * one at most: a call whose deadline is further away than this stays
 * cancelled for this long after the cancellation only.
 */
export const CANCELLATION_RETENTION_MS = 24 * 60 * 60_000;

/** Most bytes the stream keeps; the oldest segments go first. */
export const CANCELLATIONS_MAX_BYTES = 64 * 1024 * 1024;

/** The size of the stream's segments: retention drops whole segments, so they are small. */
export const CANCELLATIONS_SEGMENT_BYTES = 1024 * 1024;

/**
 * How the stream is declared, by whoever may (the broker's definitions, the
 * administrator, or a worker or caller on a broker of one user).
 */
export const CANCELLATIONS_STREAM_OPTIONS = Object.freeze({
  durable: true,
  type: "stream" as const,
  maxAgeMs: CANCELLATION_RETENTION_MS,
  maxBytes: CANCELLATIONS_MAX_BYTES,
  segmentBytes: CANCELLATIONS_SEGMENT_BYTES,
});

/**
 * The arguments RabbitMQ takes for the stream, as the broker's definitions
 * declare it (they may import nothing but the contract): those that the
 * broker layer makes of {@linkcode CANCELLATIONS_STREAM_OPTIONS}, which a
 * test holds equal.
 */
export const CANCELLATIONS_STREAM_ARGUMENTS: Readonly<Record<string, string | number>> = Object
  .freeze({
    "x-queue-type": "stream",
    "x-max-age": `${CANCELLATION_RETENTION_MS / 1000}s`,
    "x-max-length-bytes": CANCELLATIONS_MAX_BYTES,
    "x-stream-max-segment-size-bytes": CANCELLATIONS_SEGMENT_BYTES,
  });

/** The error type of a call that was cancelled, in its reply and its dead letter. */
export const CANCELLED = "Cancelled";

/** AMQP `type` of a cancellation. */
export const CANCEL_MESSAGE_TYPE = "call.cancel";

/** AMQP `type` of a worker's answer to a cancellation. */
export const CANCEL_ANSWER_MESSAGE_TYPE = "call.cancel_answer";

/**
 * AMQP `type` of the marker a worker writes to the stream as it starts: once
 * it reads its own marker back, it has read every cancellation before it,
 * and only then takes requests.
 */
export const CANCEL_SYNC_MESSAGE_TYPE = "call.cancel_sync";

/** Largest cancellation or answer accepted, in bytes; a larger one is ignored unread. */
export const MAX_CANCEL_BYTES = 4 * 1024;

/** Longest task id a cancellation may name: as long as a worker keeps of any task id. */
export const MAX_TASK_ID_CHARS = 255;

/** A cancellation, as published to the stream. */
export interface CancelRequest {
  kind: "cancel";
  /** The call's id: its request's `message_id`, else its `correlation_id`. */
  task_id: string;
  /**
   * When the cancellation may be forgotten, in ms since the epoch: the
   * call's deadline, when the canceller knows it. A worker keeps it at most
   * {@linkcode CANCELLATION_RETENTION_MS} after the cancellation either way.
   */
  until?: number;
}

/**
 * What a worker says of a cancellation it received:
 *
 * - `stopped`: it was running an attempt of the call, and stopped it;
 * - `finished`: it had answered the call already; nothing was cancelled;
 * - `already_cancelled`: the call was cancelled before (by this user or
 *   another who may);
 * - `refused`: it runs the call, but the canceller may not cancel it.
 *
 * A worker that knows nothing of the call says nothing: a call still in
 * its queue, or not sent yet, is cancelled all the same.
 */
export type CancelStatus = "stopped" | "finished" | "already_cancelled" | "refused";

/** Every {@linkcode CancelStatus}. */
export const CANCEL_STATUSES: readonly CancelStatus[] = [
  "stopped",
  "finished",
  "already_cancelled",
  "refused",
];

/** A worker's answer to a cancellation. */
export interface CancelAnswer {
  kind: "cancel_answer";
  task_id: string;
  status: CancelStatus;
  worker: string;
  function: string;
  /** For `finished`: how the call ended (`success` or `error`). */
  outcome?: string;
}

/**
 * Who may cancel a call: the broker user that sent it, an operator or the
 * administrator. A call whose sender is unknown (a request without
 * `user_id` on a broker that allows it) only the last two.
 */
export function mayCancel(canceller: string | undefined, sender: string | undefined): boolean {
  if (canceller === undefined) return false;
  if (canceller === OPERATOR_USER || canceller === ADMIN_USER) return true;
  return sender !== undefined && canceller === sender;
}

const encoder = new TextEncoder();

/** Options for {@linkcode encodeCancel}. */
export interface EncodeCancelOptions {
  /** Where workers answer: Direct Reply-to or a reply queue of the canceller's. */
  replyTo?: string;
  correlationId?: string;
  /** See {@linkcode CancelRequest.until}. */
  until?: number;
  /** @default {Date.now()} */
  now?: number;
}

/** Builds the cancellation of the call `taskId`; a `RangeError` for an id no call can have. */
export function encodeCancel(taskId: string, options: EncodeCancelOptions = {}): Message {
  if (taskId === "" || taskId.length > MAX_TASK_ID_CHARS) {
    throw new RangeError(
      `Cannot cancel call '${
        boundText(taskId, 40)
      }' as a call id has 1 to ${MAX_TASK_ID_CHARS} characters`,
    );
  }
  const body: CancelRequest = { kind: "cancel", task_id: taskId };
  if (options.until !== undefined) body.until = Math.round(options.until);
  return {
    body: encoder.encode(JSON.stringify(body)),
    properties: {
      contentType: CONTENT_TYPE,
      type: CANCEL_MESSAGE_TYPE,
      replyTo: options.replyTo,
      correlationId: options.correlationId,
      persistent: true,
      timestamp: Math.floor((options.now ?? Date.now()) / 1000),
    },
  };
}

/** Parses a cancellation a worker read off the stream; anyone may have written it. */
export function parseCancel(message: Message): Parsed<CancelRequest> {
  if (message.body.byteLength > MAX_CANCEL_BYTES) {
    return refuse(
      "InvalidRequest",
      `Cannot accept the cancellation as its body has ${message.body.byteLength} bytes: the limit is ${MAX_CANCEL_BYTES}`,
    );
  }
  const json = decodeJson(message.body, { what: "the cancellation", maxBytes: MAX_CANCEL_BYTES });
  if (!json.ok) return json;
  const body = json.value;
  if (!isPlainObject(body) || body.kind !== "cancel") {
    return refuse(
      "InvalidRequest",
      `Cannot accept the cancellation as its kind is ${
        describeValue(isPlainObject(body) ? body.kind : body)
      }: send {"kind": "cancel", "task_id": "..."}`,
    );
  }
  const id = body.task_id;
  if (typeof id !== "string" || id === "" || id.length > MAX_TASK_ID_CHARS) {
    return refuse(
      "InvalidRequest",
      `Cannot accept the cancellation as 'task_id' is ${
        describeValue(id)
      }: send the call's id, 1 to ${MAX_TASK_ID_CHARS} characters`,
    );
  }
  const until = body.until;
  if (until !== undefined && (!Number.isSafeInteger(until) || (until as number) <= 0)) {
    return refuse(
      "InvalidRequest",
      `Cannot accept the cancellation as 'until' is ${
        describeValue(until)
      }: send milliseconds since the Unix epoch`,
    );
  }
  return {
    ok: true,
    value: { kind: "cancel", task_id: id, ...(until !== undefined && { until: until as number }) },
  };
}

/** Builds a worker's answer to a cancellation. */
export function encodeCancelAnswer(answer: CancelAnswer, correlationId?: string): Message {
  return {
    body: encoder.encode(JSON.stringify(answer)),
    properties: { contentType: CONTENT_TYPE, correlationId, type: CANCEL_ANSWER_MESSAGE_TYPE },
  };
}

/** Parses a worker's answer to a cancellation; its text fields are bounded. */
export function parseCancelAnswer(message: Message): Parsed<CancelAnswer> {
  const json = decodeJson(message.body, { what: "the cancel answer", maxBytes: MAX_CANCEL_BYTES });
  if (!json.ok) return json;
  const body = json.value;
  if (
    !isPlainObject(body) || body.kind !== "cancel_answer" ||
    !CANCEL_STATUSES.includes(body.status as CancelStatus) ||
    typeof body.task_id !== "string" || typeof body.worker !== "string" ||
    typeof body.function !== "string"
  ) {
    return refuse("InvalidReply", "Cannot accept the cancel answer as its fields are wrong");
  }
  return {
    ok: true,
    value: {
      kind: "cancel_answer",
      task_id: boundText(body.task_id, MAX_TASK_ID_CHARS),
      status: body.status as CancelStatus,
      worker: boundText(body.worker, 128),
      function: boundText(body.function, 64),
      ...(typeof body.outcome === "string" && { outcome: boundText(body.outcome, 16) }),
    },
  };
}
