/**
 * Replies: the one final answer a caller receives per request, and the
 * progress events it receives when it asks for them.
 *
 * @module
 */

import { decodeJson } from "./json.ts";
import { DEFAULT_MAX_MESSAGE_BYTES } from "./envelope.ts";
import {
  CONTENT_TYPE,
  describeValue,
  isPlainObject,
  type Message,
  type Parsed,
  refuse,
  type TaskError,
} from "./message.ts";

/** AMQP `type` property of the one final reply to a request. */
export const RESULT_MESSAGE_TYPE = "task.result";

/** AMQP `type` property of a progress event, sent only when a request asks. */
export const PROGRESS_MESSAGE_TYPE = "task.progress";

/** Whether a task ran to a result. */
export type TaskStatus = "success" | "error";

/** The body of the one final reply a caller receives per request. */
export interface TaskReply {
  task_id: string | null;
  task: string | null;
  status: TaskStatus;
  result: unknown;
  error: TaskError | null;
  worker: string;
  queue: string;
  attempts: number;
  started_at: string;
  finished_at: string;
  duration_ms: number;
}

/** Kinds of progress a worker reports when a request asks for it. */
export type ProgressEvent = "started" | "retry";

/** The body of a progress event. */
export interface TaskProgress {
  task_id: string | null;
  task: string;
  event: ProgressEvent;
  worker: string;
  queue: string;
  attempt: number;
  at: string;
  /** For `retry`: the error that caused it and the wait before the next attempt. */
  error?: TaskError;
  delay_ms?: number;
  max_retries?: number;
}

const encoder = new TextEncoder();

/** Options for {@linkcode encodeReply}. */
export interface EncodeReplyOptions {
  /**
   * The result as JSON text, when the caller already has it so (a worker
   * gets it so from the function's sandbox); it replaces `reply.result`.
   * It must be one JSON value (a worker checks, with `isOneJsonValue`).
   */
  resultJson?: string;
}

/**
 * Builds the final reply for a request. A `resultJson` goes first, before
 * every field the runtime writes: should it hold more than one value (say
 * `1,"status":"error"`), a parser keeps the last of duplicate keys, which is
 * the runtime's.
 */
export function encodeReply(
  reply: TaskReply,
  correlationId: string | undefined,
  options: EncodeReplyOptions = {},
): Message {
  let text: string;
  if (options.resultJson === undefined) text = JSON.stringify(reply);
  else {
    const { result: _, ...rest } = reply;
    text = `{"result":${options.resultJson},` + JSON.stringify(rest).slice(1);
  }
  return {
    body: encoder.encode(text),
    properties: { contentType: CONTENT_TYPE, correlationId, type: RESULT_MESSAGE_TYPE },
  };
}

/** Builds a progress event for a request that asked for them. */
export function encodeProgress(progress: TaskProgress, correlationId: string | undefined): Message {
  return {
    body: encoder.encode(JSON.stringify(progress)),
    properties: { contentType: CONTENT_TYPE, correlationId, type: PROGRESS_MESSAGE_TYPE },
  };
}

const REPLY_FIELDS: [keyof TaskReply, (v: unknown) => boolean][] = [
  ["task_id", (v) => v === null || typeof v === "string"],
  ["task", (v) => v === null || typeof v === "string"],
  ["status", (v) => v === "success" || v === "error"],
  ["error", (v) =>
    v === null ||
    (isPlainObject(v) && typeof v.type === "string" && typeof v.message === "string")],
  ["worker", (v) => typeof v === "string"],
  ["queue", (v) => typeof v === "string"],
  ["attempts", (v) => Number.isInteger(v) && (v as number) >= 0],
  ["started_at", (v) => typeof v === "string"],
  ["finished_at", (v) => typeof v === "string"],
  ["duration_ms", (v) => typeof v === "number" && v >= 0],
];

/** Options for {@linkcode parseReply}. */
export interface ParseReplyOptions {
  /**
   * Largest reply accepted, in bytes.
   * @default {DEFAULT_MAX_MESSAGE_BYTES}
   */
  maxBytes?: number;
}

/** Parses a reply a caller received; an invalid one says which field is wrong. */
export function parseReply(body: Uint8Array, options: ParseReplyOptions = {}): Parsed<TaskReply> {
  const json = decodeJson(body, {
    what: "the reply",
    maxBytes: options.maxBytes ?? DEFAULT_MAX_MESSAGE_BYTES,
  });
  if (!json.ok) return json;
  const reply = json.value;
  if (!isPlainObject(reply)) {
    return refuse("InvalidReply", `Cannot accept the reply as its body is ${describeValue(reply)}`);
  }
  if (!("result" in reply)) {
    return refuse("InvalidReply", "Cannot accept the reply as 'result' is missing");
  }
  for (const [key, valid] of REPLY_FIELDS) {
    if (!valid(reply[key])) {
      return refuse(
        "InvalidReply",
        `Cannot accept the reply as '${key}' is ${describeValue(reply[key])}`,
      );
    }
  }
  return { ok: true, value: reply as unknown as TaskReply };
}

/** Parses a progress event a caller received. */
export function parseProgress(body: Uint8Array): Parsed<TaskProgress> {
  const json = decodeJson(body, {
    what: "the progress event",
    maxBytes: DEFAULT_MAX_MESSAGE_BYTES,
  });
  if (!json.ok) return json;
  const event = json.value;
  if (!isPlainObject(event) || (event.event !== "started" && event.event !== "retry")) {
    return refuse(
      "InvalidReply",
      "Cannot accept the progress event as 'event' is not started or retry",
    );
  }
  if (typeof event.worker !== "string" || !Number.isInteger(event.attempt)) {
    return refuse(
      "InvalidReply",
      "Cannot accept the progress event as 'worker' or 'attempt' is wrong",
    );
  }
  return { ok: true, value: event as unknown as TaskProgress };
}
