/**
 * Celery's `rpc://` results, both ways: what a Deno worker sends a Celery
 * client ({@linkcode encodeCeleryReply}), and how a caller of a Celery
 * worker reads what it sends ({@linkcode parseCeleryReply}). Part of the
 * Celery contract of `celery.ts`, which re-exports it; docs/celery.md has
 * the wire format.
 *
 * A result is published to the request's `reply_to` through the default
 * exchange, with `correlation_id` = the request's (Celery: the task id), and
 * a JSON body `{task_id, status, result, traceback, children}` (Deno
 * workers add `date_done`). A failure's `result` is `{exc_type,
 * exc_message, exc_module}`. A Celery worker may send more than one
 * message per task: `STARTED` (with `task_track_started`), `RETRY` (each
 * retry Celery makes itself), then one final state.
 *
 * @module
 */

import { decodeJson } from "./json.ts";
import { DEFAULT_MAX_MESSAGE_BYTES } from "./envelope.ts";
import {
  boundText,
  CONTENT_TYPE,
  describeValue,
  isPlainObject,
  MAX_ERROR_MESSAGE_CHARS,
  MAX_ERROR_TYPE_CHARS,
  type Message,
  type Parsed,
  refuse,
  type TaskError,
} from "./message.ts";

/** Celery's task states, as far as a final reply needs them. */
export type CeleryState = "SUCCESS" | "FAILURE";

/** The states after which Celery sends nothing more for a task (Celery's `READY_STATES`). */
export const CELERY_READY_STATES: readonly string[] = ["SUCCESS", "FAILURE", "REVOKED"];

/** The error type of a Celery failure whose result names no exception. */
export const CELERY_FAILURE = "CeleryFailure";

const encoder = new TextEncoder();

/**
 * Builds the result message Celery's `rpc://` backend expects. For a
 * failure, the client raises an exception named after the error's type
 * (Celery makes the class when it does not know it), with its message.
 */
export function encodeCeleryReply(
  taskId: string,
  outcome: { ok: true; resultJson: string } | { ok: false; error: TaskError },
): Message {
  const common = {
    task_id: taskId,
    traceback: null as string | null,
    children: [],
    date_done: new Date().toISOString(),
  };
  let text: string;
  if (outcome.ok) {
    // The result first: the fields Celery routes and judges by (task_id,
    // status, children) come after it, and a parser keeps the last of
    // duplicate keys.
    const tail = JSON.stringify({ ...common, status: "SUCCESS" as CeleryState });
    text = `{"result":${outcome.resultJson},` + tail.slice(1);
  } else {
    text = JSON.stringify({
      ...common,
      status: "FAILURE" as CeleryState,
      traceback: `${outcome.error.type}: ${outcome.error.message}`,
      result: {
        exc_type: outcome.error.type,
        exc_message: [outcome.error.message],
        exc_module: "celery.exceptions",
      },
    });
  }
  return {
    body: encoder.encode(text),
    properties: {
      contentType: CONTENT_TYPE,
      contentEncoding: "utf-8",
      correlationId: taskId,
    },
  };
}

/** One result message of a Celery worker, after validation. */
export interface CeleryResult {
  /** The task id it is about. */
  taskId: string;
  /** Celery's state: `SUCCESS`, `FAILURE`, `REVOKED` (final), `STARTED`, `RETRY`, ... */
  status: string;
  /**
   * The task's return value for `SUCCESS`; for `STARTED`, what Celery
   * says of the worker (`{pid, hostname}`); `null` for an exception.
   */
  result: unknown;
  /** For `FAILURE`, `RETRY` and `REVOKED`: the exception, as a task error. */
  error?: TaskError;
  /** Celery's traceback text, if it sent one. */
  traceback: string | null;
  /** `date_done`, in ms since the epoch, when given and valid. */
  dateDone?: number;
}

const STATE_PATTERN = /^[A-Z_]{1,32}$/;
const EXCEPTION_STATES = new Set(["FAILURE", "RETRY", "REVOKED"]);

/** The text of Celery's `exc_message`: the exception's arguments, usually one string. */
function exceptionText(value: unknown): string {
  const parts = Array.isArray(value) ? value : [value];
  const text = parts.map((part) => typeof part === "string" ? part : JSON.stringify(part))
    .join(", ");
  return boundText(text, MAX_ERROR_MESSAGE_CHARS);
}

function errorOf(result: unknown, traceback: string | null, status: string): TaskError {
  if (isPlainObject(result) && typeof result.exc_type === "string" && result.exc_type !== "") {
    return {
      type: boundText(result.exc_type, MAX_ERROR_TYPE_CHARS),
      message: exceptionText(result.exc_message ?? ""),
    };
  }
  const last = traceback?.trim().split("\n").at(-1);
  return {
    type: CELERY_FAILURE,
    message: boundText(
      last || `The Celery task ended ${status} with ${describeValue(result)}`,
      MAX_ERROR_MESSAGE_CHARS,
    ),
  };
}

/** Python's `isoformat()` of a naive UTC time has no zone: read it as UTC, not local time. */
function parseUtc(text: string): number {
  return Date.parse(/(Z|[+-]\d\d:?\d\d)$/i.test(text) ? text : `${text}Z`);
}

/** Options for {@linkcode parseCeleryReply}. */
export interface ParseCeleryReplyOptions {
  /** @default {DEFAULT_MAX_MESSAGE_BYTES} */
  maxBytes?: number;
}

/**
 * Parses one `rpc://` result message a Celery worker sent; never throws.
 * An invalid one says which field is wrong.
 */
export function parseCeleryReply(
  body: Uint8Array,
  options: ParseCeleryReplyOptions = {},
): Parsed<CeleryResult> {
  const json = decodeJson(body, {
    what: "the Celery result",
    maxBytes: options.maxBytes ?? DEFAULT_MAX_MESSAGE_BYTES,
  });
  if (!json.ok) return json;
  const reply = json.value;
  if (!isPlainObject(reply)) {
    return refuse(
      "InvalidReply",
      `Cannot accept the Celery result as its body is ${describeValue(reply)}, not an object`,
    );
  }
  if (typeof reply.task_id !== "string" || reply.task_id === "") {
    return refuse(
      "InvalidReply",
      `Cannot accept the Celery result as 'task_id' is ${describeValue(reply.task_id)}`,
    );
  }
  if (typeof reply.status !== "string" || !STATE_PATTERN.test(reply.status)) {
    return refuse(
      "InvalidReply",
      `Cannot accept the Celery result as 'status' is ${
        describeValue(reply.status)
      }: Celery sends a state such as SUCCESS or FAILURE`,
    );
  }
  const traceback = typeof reply.traceback === "string" ? reply.traceback : null;
  const result: CeleryResult = {
    taskId: reply.task_id,
    status: reply.status,
    result: reply.result ?? null,
    traceback,
  };
  if (EXCEPTION_STATES.has(reply.status)) {
    result.error = errorOf(reply.result, traceback, reply.status);
    result.result = null;
  }
  const dateDone = typeof reply.date_done === "string" ? parseUtc(reply.date_done) : NaN;
  if (Number.isFinite(dateDone)) result.dateDone = dateDone;
  return { ok: true, value: result };
}
