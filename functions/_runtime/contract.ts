/**
 * The wire contract between callers and functions: what a request and a reply
 * look like on the broker, and how both are parsed and validated. The
 * dispatcher and the worker runtime share this module and nothing else of
 * each other, so any AMQP client that follows README.md "Wire contract" can
 * call a function.
 *
 * @module
 */

/** The only content type a request or a reply may have. */
export const CONTENT_TYPE = "application/json";

/** Requests larger than this are refused unless a worker raises its limit. */
export const DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024;

/** AMQP `type` property of the one final reply to a request. */
export const RESULT_MESSAGE_TYPE = "task.result";

/** AMQP `type` property of a progress event, sent only when a request asks. */
export const PROGRESS_MESSAGE_TYPE = "task.progress";

/** Header the runtime sets on a request it schedules for another attempt. */
export const ATTEMPT_HEADER = "x-attempt";

/** A function's input: always a JSON object. */
export type Payload = Record<string, unknown>;

/** Retry settings a caller may give per request; each overrides the function's default. */
export interface RetryOverrides {
  max_retries?: number;
  base_delay_ms?: number;
  factor?: number;
  max_delay_ms?: number;
}

/** The body of a request, after validation. */
export interface TaskRequest {
  /** Name of the function that must run this request, for example `task_a`. */
  task: string;
  /** Input of the function; `{}` when the caller gave none. */
  payload: Payload;
  /** When true, the worker also sends progress events to `reply_to`. */
  progress: boolean;
  /** Per-request retry settings. */
  retry: RetryOverrides;
}

/** Why a task failed, as carried by an error reply. */
export interface TaskError {
  /** A stable name for the kind of failure, for example `WrongFunction`. */
  type: string;
  /** What went wrong and, where it helps, how to fix it. */
  message: string;
}

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

/**
 * AMQP basic properties, named as in the AMQP 0-9-1 spec but in camelCase.
 * Brokers carry them unchanged from publisher to consumer.
 */
export interface MessageProperties {
  contentType?: string;
  correlationId?: string;
  replyTo?: string;
  messageId?: string;
  type?: string;
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

/** The outcome of parsing untrusted input: a value, or an error a caller can act on. */
export type Parsed<T> = { ok: true; value: T } | { ok: false; error: TaskError };

/** Options for {@linkcode parseRequest}. */
export interface ParseRequestOptions {
  /** The function this worker runs; a request for any other is refused. */
  task: string;
  /**
   * Largest body accepted, in bytes.
   * @default {DEFAULT_MAX_MESSAGE_BYTES}
   */
  maxBytes?: number;
}

const REQUEST_KEYS = ["task", "payload", "progress", "retry"];
const RETRY_KEYS: (keyof RetryOverrides)[] = [
  "max_retries",
  "base_delay_ms",
  "factor",
  "max_delay_ms",
];
const decoder = new TextDecoder("utf-8", { fatal: true });
const encoder = new TextEncoder();

function fail(type: string, message: string): { ok: false; error: TaskError } {
  return { ok: false, error: { type, message } };
}

/** Whether a content type names JSON, ignoring parameters such as `charset`. */
export function isJsonContentType(contentType: string | undefined): boolean {
  return contentType?.split(";")[0].trim().toLowerCase() === CONTENT_TYPE;
}

function decodeJson(body: Uint8Array, what: string): Parsed<unknown> {
  if (body.byteLength === 0) {
    return fail("InvalidJson", `Cannot parse ${what} as its body is empty: send a JSON object`);
  }
  let text: string;
  try {
    text = decoder.decode(body);
  } catch {
    return fail("InvalidJson", `Cannot parse ${what} as its body is not UTF-8 text: send JSON`);
  }
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (error) {
    const detail = error instanceof Error ? error.message : String(error);
    return fail("InvalidJson", `Cannot parse ${what} as JSON: ${detail}`);
  }
}

function describe(value: unknown): string {
  if (value === undefined) return "missing";
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "string") return `the string ${JSON.stringify(value.slice(0, 40))}`;
  return `${typeof value === "object" ? "an" : "a"} ${typeof value}`;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function parseRetry(value: unknown): Parsed<RetryOverrides> {
  if (value === undefined) return { ok: true, value: {} };
  if (!isPlainObject(value)) {
    return fail(
      "InvalidRequest",
      `Cannot accept 'retry' as it is ${describe(value)}: send an object`,
    );
  }
  const retry: RetryOverrides = {};
  for (const [key, field] of Object.entries(value)) {
    if (!RETRY_KEYS.includes(key as keyof RetryOverrides)) {
      return fail(
        "InvalidRequest",
        `Cannot accept 'retry.${key}' as it is not a retry setting: use ${RETRY_KEYS.join(", ")}`,
      );
    }
    const min = key === "factor" ? 1 : 0;
    if (typeof field !== "number" || !Number.isFinite(field) || field < min) {
      return fail(
        "InvalidRequest",
        `Cannot accept 'retry.${key}' as it is ${describe(field)}: send a number >= ${min}`,
      );
    }
    if (key === "max_retries" && !Number.isInteger(field)) {
      return fail(
        "InvalidRequest",
        `Cannot accept 'retry.max_retries' as ${field} is not a whole number`,
      );
    }
    retry[key as keyof RetryOverrides] = field;
  }
  return { ok: true, value: retry };
}

/**
 * Parses and validates a request a worker received. Never throws: whatever
 * the input, the result is a request or an error that says exactly what was
 * wrong, so the worker can reply with it and go on serving.
 */
export function parseRequest(message: Message, options: ParseRequestOptions): Parsed<TaskRequest> {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  const { contentType } = message.properties;
  if (!isJsonContentType(contentType)) {
    const actual = contentType === undefined ? "missing" : `'${contentType}'`;
    return fail(
      "InvalidContentType",
      `Cannot accept the request as its content_type is ${actual}: set it to '${CONTENT_TYPE}'`,
    );
  }
  if (message.body.byteLength > maxBytes) {
    return fail(
      "MessageTooLarge",
      `Cannot accept the request as its body has ${message.body.byteLength} bytes: the limit is ${maxBytes}`,
    );
  }
  const json = decodeJson(message.body, "the request");
  if (!json.ok) return json;
  const body = json.value;
  if (!isPlainObject(body)) {
    return fail(
      "InvalidRequest",
      `Cannot accept the request as its body is ${
        describe(body)
      }: send {"task": "${options.task}", "payload": {...}}`,
    );
  }
  for (const key of Object.keys(body)) {
    if (!REQUEST_KEYS.includes(key)) {
      return fail(
        "InvalidRequest",
        `Cannot accept the request as '${key}' is not a request field: use ${
          REQUEST_KEYS.join(", ")
        }`,
      );
    }
  }
  if (typeof body.task !== "string" || body.task === "") {
    const actual = body.task === undefined ? "missing" : describe(body.task);
    return fail(
      "InvalidRequest",
      `Cannot accept the request as 'task' is ${actual}: set it to "${options.task}"`,
    );
  }
  if (body.task !== options.task) {
    return fail(
      "WrongFunction",
      `Cannot run '${body.task}' on the queue of '${options.task}': send it to the queue of '${body.task}'`,
    );
  }
  const payload = body.payload ?? {};
  if (!isPlainObject(payload)) {
    return fail(
      "InvalidRequest",
      `Cannot accept 'payload' as it is ${describe(payload)}: send a JSON object or leave it out`,
    );
  }
  if (body.progress !== undefined && typeof body.progress !== "boolean") {
    return fail(
      "InvalidRequest",
      `Cannot accept 'progress' as it is ${describe(body.progress)}: send true or false`,
    );
  }
  const retry = parseRetry(body.retry);
  if (!retry.ok) return retry;
  return {
    ok: true,
    value: { task: body.task, payload, progress: body.progress === true, retry: retry.value },
  };
}

/** Options for {@linkcode encodeRequest}. */
export interface EncodeRequestOptions {
  /** Identifies the task; also used as the correlation id. */
  taskId: string;
  /** Where the reply goes, for example `amq.rabbitmq.reply-to`. */
  replyTo?: string;
  /** Ask the worker for progress events. */
  progress?: boolean;
  retry?: RetryOverrides;
}

/** Builds the message that asks a function to run once. */
export function encodeRequest(
  task: string,
  payload: Payload | undefined,
  options: EncodeRequestOptions,
): Message {
  const body: Record<string, unknown> = { task };
  if (payload !== undefined) body.payload = payload;
  if (options.progress) body.progress = true;
  if (options.retry && Object.keys(options.retry).length > 0) body.retry = options.retry;
  return {
    body: encoder.encode(JSON.stringify(body)),
    properties: {
      contentType: CONTENT_TYPE,
      correlationId: options.taskId,
      messageId: options.taskId,
      replyTo: options.replyTo,
      persistent: true,
      timestamp: Math.floor(Date.now() / 1000),
    },
  };
}

/** Builds the final reply for a request. */
export function encodeReply(reply: TaskReply, correlationId: string | undefined): Message {
  return {
    body: encoder.encode(JSON.stringify(reply)),
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

/** Parses a reply a caller received; an invalid one says which field is wrong. */
export function parseReply(body: Uint8Array): Parsed<TaskReply> {
  const json = decodeJson(body, "the reply");
  if (!json.ok) return json;
  const reply = json.value;
  if (!isPlainObject(reply)) {
    return fail("InvalidReply", `Cannot accept the reply as its body is ${describe(reply)}`);
  }
  if (!("result" in reply)) {
    return fail("InvalidReply", "Cannot accept the reply as 'result' is missing");
  }
  for (const [key, valid] of REPLY_FIELDS) {
    if (!valid(reply[key])) {
      return fail("InvalidReply", `Cannot accept the reply as '${key}' is ${describe(reply[key])}`);
    }
  }
  return { ok: true, value: reply as unknown as TaskReply };
}

/** Parses a progress event a caller received. */
export function parseProgress(body: Uint8Array): Parsed<TaskProgress> {
  const json = decodeJson(body, "the progress event");
  if (!json.ok) return json;
  const event = json.value;
  if (!isPlainObject(event) || (event.event !== "started" && event.event !== "retry")) {
    return fail(
      "InvalidReply",
      "Cannot accept the progress event as 'event' is not started or retry",
    );
  }
  if (typeof event.worker !== "string" || !Number.isInteger(event.attempt)) {
    return fail(
      "InvalidReply",
      "Cannot accept the progress event as 'worker' or 'attempt' is wrong",
    );
  }
  return { ok: true, value: event as unknown as TaskProgress };
}

/**
 * The fanout exchange of the control channel: every worker binds a queue of
 * its own to it, so one message published here reaches every live worker.
 */
export const CONTROL_EXCHANGE = "tasks.control";

/** AMQP `type` property of a control request such as a ping. */
export const CONTROL_MESSAGE_TYPE = "control.request";

/** AMQP `type` property of a worker's answer to a ping. */
export const WORKER_INFO_MESSAGE_TYPE = "control.worker_info";

/** Control requests a worker answers. */
export type ControlRequest = { kind: "ping" };

/** What a worker answers to a ping: who it is and what it has done since it started. */
export interface WorkerInfo {
  kind: "pong";
  /** The worker's id, as in replies and logs. */
  worker: string;
  function: string;
  queue: string;
  /** When the worker process started. */
  started_at: string;
  uptime_ms: number;
  /** Handlers this worker runs at once. */
  concurrency: number;
  /** Tasks finished: succeeded + failed + rejected. */
  tasks_done: number;
  succeeded: number;
  failed: number;
  rejected: number;
  /** Failed attempts it scheduled for another try. */
  retried: number;
  /** Tasks whose handler is running now. */
  in_flight: number;
}

/** Builds a ping: every worker that receives it answers on `replyTo`. */
export function encodePing(correlationId: string, replyTo: string): Message {
  return {
    body: encoder.encode(JSON.stringify({ kind: "ping" } satisfies ControlRequest)),
    properties: { contentType: CONTENT_TYPE, correlationId, replyTo, type: CONTROL_MESSAGE_TYPE },
  };
}

/** Parses a control request a worker received. */
export function parseControlRequest(body: Uint8Array): Parsed<ControlRequest> {
  const json = decodeJson(body, "the control request");
  if (!json.ok) return json;
  const request = json.value;
  if (!isPlainObject(request) || request.kind !== "ping") {
    return fail(
      "InvalidRequest",
      `Cannot accept the control request as its kind is ${
        describe(isPlainObject(request) ? request.kind : request)
      }: send {"kind": "ping"}`,
    );
  }
  return { ok: true, value: { kind: "ping" } };
}

/** Builds a worker's answer to a ping. */
export function encodeWorkerInfo(info: WorkerInfo, correlationId: string | undefined): Message {
  return {
    body: encoder.encode(JSON.stringify(info)),
    properties: { contentType: CONTENT_TYPE, correlationId, type: WORKER_INFO_MESSAGE_TYPE },
  };
}

const WORKER_INFO_COUNTS: (keyof WorkerInfo)[] = [
  "uptime_ms",
  "concurrency",
  "tasks_done",
  "succeeded",
  "failed",
  "rejected",
  "retried",
  "in_flight",
];

/** Parses a worker's answer to a ping; an invalid one says which field is wrong. */
export function parseWorkerInfo(body: Uint8Array): Parsed<WorkerInfo> {
  const json = decodeJson(body, "the worker info");
  if (!json.ok) return json;
  const info = json.value;
  if (!isPlainObject(info) || info.kind !== "pong") {
    return fail("InvalidReply", "Cannot accept the worker info as its kind is not pong");
  }
  for (const key of ["worker", "function", "queue", "started_at"]) {
    if (typeof info[key] !== "string") {
      return fail(
        "InvalidReply",
        `Cannot accept the worker info as '${key}' is ${describe(info[key])}`,
      );
    }
  }
  for (const key of WORKER_INFO_COUNTS) {
    const value = info[key];
    if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
      return fail(
        "InvalidReply",
        `Cannot accept the worker info as '${key}' is ${describe(value)}`,
      );
    }
  }
  return { ok: true, value: info as unknown as WorkerInfo };
}
