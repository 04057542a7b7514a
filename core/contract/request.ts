/**
 * A request: what a caller publishes to ask a function to run once, how its
 * body is validated, and how it is built. See docs/wire-contract.md.
 *
 * @module
 */

import { decodeJson } from "./json.ts";
import { checkEnvelope, DEFAULT_MAX_MESSAGE_BYTES } from "./envelope.ts";
import {
  boundText,
  CONTENT_TYPE,
  describeValue,
  isPlainObject,
  type Message,
  type Parsed,
  refuse,
  type TaskError,
} from "./message.ts";
import { NAME_PATTERN, SENT_AT_HEADER } from "./names.ts";

/** A function's input: always a JSON object. */
export type Payload = Record<string, unknown>;

/** Retry settings a caller may give per request; each overrides the function's default. */
export interface RetryOverrides {
  max_retries?: number;
  base_delay_ms?: number;
  factor?: number;
  max_delay_ms?: number;
}

/**
 * The largest value of each per-request retry setting. Delays are whole
 * milliseconds of at most a day, which RabbitMQ accepts as a message TTL.
 */
export const RETRY_LIMITS: Readonly<Required<RetryOverrides>> = Object.freeze({
  max_retries: 25,
  base_delay_ms: 86_400_000,
  factor: 10,
  max_delay_ms: 86_400_000,
});

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
  /**
   * When the caller stops waiting, in milliseconds since the Unix epoch: no
   * attempt starts after it, and a running one is aborted at it.
   */
  deadline?: number;
}

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

const REQUEST_KEYS = ["task", "payload", "progress", "retry", "deadline"];
const RETRY_KEYS = Object.keys(RETRY_LIMITS) as (keyof RetryOverrides)[];
/** Latest representable time, as `Date` defines it. */
const MAX_TIME_MS = 8.64e15;
const encoder = new TextEncoder();

function parseRetry(value: unknown): Parsed<RetryOverrides> {
  if (value === undefined) return { ok: true, value: {} };
  if (!isPlainObject(value)) {
    return refuse(
      "InvalidRequest",
      `Cannot accept 'retry' as it is ${describeValue(value)}: send an object`,
    );
  }
  const retry: RetryOverrides = {};
  for (const key in value) {
    const field = value[key];
    if (!RETRY_KEYS.includes(key as keyof RetryOverrides)) {
      return refuse(
        "InvalidRequest",
        `Cannot accept 'retry.${boundText(key, 40)}' as it is not a retry setting: use ${
          RETRY_KEYS.join(", ")
        }`,
      );
    }
    const name = key as keyof RetryOverrides;
    const min = name === "factor" ? 1 : 0;
    const max = RETRY_LIMITS[name];
    const whole = name !== "factor";
    if (
      typeof field !== "number" || !Number.isFinite(field) || field < min || field > max ||
      (whole && !Number.isInteger(field))
    ) {
      return refuse(
        "InvalidRequest",
        `Cannot accept 'retry.${name}' as it is ${describeValue(field)}: send ${
          whole ? "a whole number" : "a number"
        } from ${min} to ${max}`,
      );
    }
    retry[name] = field;
  }
  return { ok: true, value: retry };
}

function parseDeadline(value: unknown): Parsed<number | undefined> {
  if (value === undefined) return { ok: true, value: undefined };
  if (
    typeof value !== "number" || !Number.isSafeInteger(value) || value <= 0 ||
    value > MAX_TIME_MS
  ) {
    return refuse(
      "InvalidRequest",
      `Cannot accept 'deadline' as it is ${
        describeValue(value)
      }: send milliseconds since the Unix epoch, such as Date.now() + 10000`,
    );
  }
  return { ok: true, value };
}

/**
 * Parses and validates a request a worker received. Never throws: whatever
 * the input, the result is a request or an error that says what was wrong,
 * so the worker can reply with it and go on serving. The envelope is checked
 * first, and the body is decoded within its size and depth bounds.
 */
export function parseRequest(message: Message, options: ParseRequestOptions): Parsed<TaskRequest> {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  const envelope = checkEnvelope(message, { maxBytes });
  if (!envelope.ok) return envelope;
  const json = decodeJson(message.body, { what: "the request", maxBytes });
  if (!json.ok) return json;
  const body = json.value;
  if (!isPlainObject(body)) {
    return refuse(
      "InvalidRequest",
      `Cannot accept the request as its body is ${
        describeValue(body)
      }: send {"task": "${options.task}", "payload": {...}}`,
    );
  }
  for (const key in body) {
    if (!REQUEST_KEYS.includes(key)) {
      return refuse(
        "InvalidRequest",
        `Cannot accept the request as '${boundText(key, 40)}' is not a request field: use ${
          REQUEST_KEYS.join(", ")
        }`,
      );
    }
  }
  if (typeof body.task !== "string" || body.task === "") {
    return refuse(
      "InvalidRequest",
      `Cannot accept the request as 'task' is ${
        describeValue(body.task)
      }: set it to "${options.task}"`,
    );
  }
  const named = (refusal: { ok: false; error: TaskError }) =>
    NAME_PATTERN.test(body.task as string) ? { ...refusal, task: body.task as string } : refusal;
  if (body.task !== options.task) {
    return named(refuse(
      "WrongFunction",
      NAME_PATTERN.test(body.task)
        ? `Cannot run '${body.task}' on the queue of '${options.task}': send it to the queue of '${body.task}'`
        : `Cannot run ${
          describeValue(body.task)
        } on the queue of '${options.task}' as it is not a function name: set 'task' to "${options.task}"`,
    ));
  }
  const payload = body.payload ?? {};
  if (!isPlainObject(payload)) {
    return named(refuse(
      "InvalidRequest",
      `Cannot accept 'payload' as it is ${
        describeValue(payload)
      }: send a JSON object or leave it out`,
    ));
  }
  if (body.progress !== undefined && typeof body.progress !== "boolean") {
    return named(refuse(
      "InvalidRequest",
      `Cannot accept 'progress' as it is ${describeValue(body.progress)}: send true or false`,
    ));
  }
  const retry = parseRetry(body.retry);
  if (!retry.ok) return named(retry);
  const deadline = parseDeadline(body.deadline);
  if (!deadline.ok) return named(deadline);
  const request: TaskRequest = {
    task: body.task,
    payload,
    progress: body.progress === true,
    retry: retry.value,
  };
  if (deadline.value !== undefined) request.deadline = deadline.value;
  return { ok: true, value: request };
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
  /**
   * When the caller stops waiting (ms since the epoch). Also sets the AMQP
   * `expiration`, so that the broker dead-letters a request nobody waits for.
   */
  deadline?: number;
  /** Extra headers, such as W3C `traceparent`. */
  headers?: Record<string, unknown>;
  /**
   * Add `x-sent-at`, the send time in milliseconds, from which a worker's
   * trace times the wait in the queue. Off by default: a header table costs
   * the caller as much as the rest of the request, and without it a worker
   * falls back on the AMQP `timestamp`, in whole seconds.
   */
  stampSentAt?: boolean;
  /** The time `deadline` is measured from. @default {Date.now()} */
  now?: number;
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
  if (options.deadline !== undefined) body.deadline = Math.round(options.deadline);
  const now = options.now ?? Date.now();
  const message: Message = {
    body: encoder.encode(JSON.stringify(body)),
    properties: {
      contentType: CONTENT_TYPE,
      correlationId: options.taskId,
      messageId: options.taskId,
      replyTo: options.replyTo,
      persistent: true,
      timestamp: Math.floor(now / 1000),
    },
  };
  if (options.deadline !== undefined) {
    message.properties.expiration = String(Math.max(1, Math.ceil(options.deadline - now)));
  }
  if (options.stampSentAt) {
    message.properties.headers = { [SENT_AT_HEADER]: now, ...options.headers };
  } else if (options.headers) message.properties.headers = { ...options.headers };
  return message;
}
