/**
 * Celery's message protocol, version 2, as far as Deno functions speak it:
 * a Celery client (`task.delay()`, `app.send_task()`) can call a function,
 * and gets its result the way Celery's `rpc://` result backend expects it.
 * See docs/celery.md for the mapping and what is refused.
 *
 * A request: headers `task` (the Celery task name), `id`, `retries`, `eta`,
 * `expires`, `timelimit`; body `[args, kwargs, embed]` as JSON. A reply:
 * published to the request's `reply_to` through the default exchange,
 * `correlation_id` = the task id, body `{task_id, status, result, traceback,
 * children, date_done}`, a failure's `result` being `{exc_type,
 * exc_message, exc_module}`.
 *
 * @module
 */

import { decodeJson } from "./json.ts";
import {
  boundText,
  CONTENT_TYPE,
  describeValue,
  isJsonContentType,
  isPlainObject,
  type Message,
  type Parsed,
  refuse,
  type TaskError,
} from "./message.ts";
import type { Payload } from "./request.ts";

/** A Celery request, after validation. */
export interface CeleryRequest {
  /** The Celery task name it asked for, such as `tasks.task_a`. */
  name: string;
  /** The Celery task id: replies carry it as `task_id` and `correlation_id`. */
  id: string;
  payload: Payload;
  /** Earlier attempts Celery counted (`retries`): the first attempt is `retries + 1`. */
  retries: number;
  /** Run no sooner than this (ms since the epoch). */
  eta?: number;
  /** Give up after this (ms since the epoch): as a native request's `deadline`. */
  expires?: number;
  /** Celery's hard time limit, else its soft one, in milliseconds. */
  timeLimitMs?: number;
  /** The client asked for no result. */
  ignoreResult: boolean;
}

/** Options for {@linkcode parseCeleryRequest}. */
export interface ParseCeleryRequestOptions {
  /** The Celery task names this function answers to. */
  names: readonly string[];
  maxBytes: number;
}

/** Celery names its tasks after their Python module and function: `tasks.task_a`. */
export const CELERY_NAME_PATTERN = /^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*){0,15}$/;

/** The canvas features of Celery a Deno function refuses, by their key in `embed`. */
const CANVAS = ["callbacks", "errbacks", "chain", "chord"] as const;

/** Whether a delivery is a Celery protocol 2 request rather than a native one. */
export function isCeleryMessage(message: Message): boolean {
  const headers = message.properties.headers;
  return typeof headers?.task === "string" && typeof headers?.id === "string";
}

function timeOf(value: unknown, header: string): Parsed<number | undefined> {
  if (value === undefined || value === null) return { ok: true, value: undefined };
  const text = value instanceof Uint8Array ? new TextDecoder().decode(value) : value;
  const time = typeof text === "string" ? Date.parse(text) : NaN;
  if (!Number.isFinite(time)) {
    return refuse(
      "InvalidRequest",
      `Cannot accept the Celery header '${header}' as it is ${
        describeValue(text)
      }: send an ISO 8601 time, as Celery does`,
    );
  }
  return { ok: true, value: time };
}

function timeLimitOf(value: unknown): number | undefined {
  if (!Array.isArray(value)) return undefined;
  const [soft, hard] = value;
  const seconds = typeof hard === "number" ? hard : typeof soft === "number" ? soft : undefined;
  return seconds !== undefined && seconds > 0 && Number.isFinite(seconds)
    ? Math.ceil(seconds * 1000)
    : undefined;
}

/**
 * The payload a function sees for Celery's `args` and `kwargs`: the
 * keyword arguments; a single positional argument that is an object is
 * merged under them (`task.delay({"work_ms": 5})`); other positional
 * arguments come as `args`.
 */
export function payloadOfCeleryArguments(args: unknown[], kwargs: Payload): Payload {
  if (args.length === 0) return { ...kwargs };
  if (args.length === 1 && isPlainObject(args[0])) return { ...args[0], ...kwargs };
  return { args, ...kwargs };
}

/**
 * Parses and validates a Celery request; never throws. The envelope (size,
 * encoding, headers) must already have been checked.
 */
export function parseCeleryRequest(
  message: Message,
  options: ParseCeleryRequestOptions,
): Parsed<CeleryRequest> {
  const headers = message.properties.headers ?? {};
  const name = String(headers.task);
  const id = boundText(String(headers.id), 255);
  const { contentType } = message.properties;
  if (!isJsonContentType(contentType)) {
    return refuse(
      "ContentDisallowed",
      `Cannot accept a Celery task serialized as '${
        boundText(String(contentType), 60)
      }': Deno functions take JSON only; set task_serializer = 'json' on the client`,
    );
  }
  if (headers.compression !== undefined) {
    return refuse(
      "ContentDisallowed",
      "Cannot accept a compressed Celery task: workers never decompress; turn compression off on the client",
    );
  }
  if (!CELERY_NAME_PATTERN.test(name) || !options.names.includes(name)) {
    return refuse(
      "NotRegistered",
      `Cannot run the Celery task ${
        CELERY_NAME_PATTERN.test(name) ? `'${name}'` : describeValue(name)
      } on this queue: it serves ${
        options.names.join(", ") || "no Celery task"
      }; route the task to the queue of the function that names it`,
    );
  }
  const json = decodeJson(message.body, { what: "the Celery task", maxBytes: options.maxBytes });
  if (!json.ok) return json;
  const body = json.value;
  if (!Array.isArray(body) || body.length !== 3) {
    return refuse(
      "InvalidRequest",
      `Cannot accept the Celery task as its body is ${
        describeValue(body)
      }, not [args, kwargs, embed]: send Celery message protocol 2`,
    );
  }
  const [args, kwargs, embed] = body;
  if (!Array.isArray(args) || !isPlainObject(kwargs) || !(embed === null || isPlainObject(embed))) {
    return refuse(
      "InvalidRequest",
      "Cannot accept the Celery task as its body is not [list, dict, dict]: send Celery message protocol 2",
    );
  }
  for (const feature of CANVAS) {
    const value = embed?.[feature];
    if (value !== null && value !== undefined && !(Array.isArray(value) && value.length === 0)) {
      return refuse(
        "NotSupported",
        `Cannot run a Celery task with '${feature}': Deno functions do not take part in Celery's canvas (link, link_error, chain, chord); call the tasks one at a time and pass results on yourself`,
      );
    }
  }
  const eta = timeOf(headers.eta, "eta");
  if (!eta.ok) return eta;
  const expires = timeOf(headers.expires, "expires");
  if (!expires.ok) return expires;
  const retries = Number.isInteger(headers.retries) && (headers.retries as number) >= 0
    ? Math.min(headers.retries as number, 1000)
    : 0;
  const request: CeleryRequest = {
    name,
    id,
    payload: payloadOfCeleryArguments(args, kwargs),
    retries,
    ignoreResult: headers.ignore_result === true,
  };
  if (eta.value !== undefined) request.eta = eta.value;
  if (expires.value !== undefined) request.expires = expires.value;
  const limit = timeLimitOf(headers.timelimit);
  if (limit !== undefined) request.timeLimitMs = limit;
  return { ok: true, value: request };
}

/** Celery's task states, as far as a final reply needs them. */
export type CeleryState = "SUCCESS" | "FAILURE";

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
    const head = JSON.stringify({ ...common, status: "SUCCESS" as CeleryState });
    text = head.slice(0, -1) + `,"result":${outcome.resultJson}}`;
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
