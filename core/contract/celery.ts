/**
 * Celery's message protocol, version 2, as far as Deno functions speak it:
 * a Celery client (`task.delay()`, `app.send_task()`) can call a function,
 * and gets its result the way Celery's `rpc://` result backend expects it.
 * See docs/celery.md for the mapping and what is refused.
 *
 * A request: headers `task` (the Celery task name), `id`, `retries`, `eta`,
 * `expires`, `timelimit`; body `[args, kwargs, embed]` as JSON. A worker
 * parses it ({@linkcode parseCeleryRequest}); a caller of a Celery worker
 * builds it ({@linkcode encodeCeleryRequest}). The `rpc://` results that
 * answer it are in `celery_reply.ts`, re-exported here, so that both sides
 * share one definition of each message.
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
} from "./message.ts";
import { SENT_AT_HEADER } from "./names.ts";
import type { Payload } from "./request.ts";

export * from "./celery_reply.ts";

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

const encoder = new TextEncoder();

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

/** Celery sends `timelimit` as `[time_limit, soft_time_limit]`: hard first. */
function timeLimitOf(value: unknown): number | undefined {
  if (!Array.isArray(value)) return undefined;
  const [hard, soft] = value;
  const seconds = typeof hard === "number" ? hard : typeof soft === "number" ? soft : undefined;
  return seconds !== undefined && seconds > 0 && Number.isFinite(seconds)
    ? Math.ceil(seconds * 1000)
    : undefined;
}

/**
 * The payload a function sees for Celery's `args` and `kwargs`: the
 * keyword arguments; a single positional argument that is an object is
 * merged under them (`task.delay({"work_ms": 5})`); other positional
 * arguments come as `args`. {@linkcode celeryArgumentsOf} is the way back.
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

/**
 * Celery's `args` and `kwargs` for a payload, as a caller of a Celery task
 * sends them: a list under `args` becomes the positional arguments, every
 * other key a keyword argument. `{work_ms: 5}` calls `task(work_ms=5)`;
 * `{args: [2, 3]}` calls `task(2, 3)`.
 */
export function celeryArgumentsOf(payload: Payload | undefined): [unknown[], Payload] {
  if (payload === undefined) return [[], {}];
  const { args, ...kwargs } = payload;
  return Array.isArray(args) ? [args, kwargs] : [[], { ...payload }];
}

/** Options for {@linkcode encodeCeleryRequest}. */
export interface EncodeCeleryRequestOptions {
  /** The Celery task id; also the correlation id its results carry back. */
  taskId: string;
  /** Where the results go, such as `amq.rabbitmq.reply-to`. */
  replyTo?: string;
  /**
   * Earlier attempts, as Celery's `retries` counts them: the task sees it as
   * `self.request.retries`.
   * @default {0}
   */
  retries?: number;
  /**
   * When the caller stops waiting (ms since the epoch): Celery's `expires`
   * (a worker discards the task after it) and the AMQP `expiration`.
   */
  expires?: number;
  /** Who sent it, for Celery's `origin` header. @default {"task-system"} */
  origin?: string;
  /** The time `expires` is measured from. @default {Date.now()} */
  now?: number;
}

/** Python's `isoformat()` of an aware UTC time, which every Celery version reads. */
function isoTime(ms: number): string {
  return new Date(ms).toISOString().replace("Z", "+00:00");
}

/** Celery's `argsrepr` and `kwargsrepr`: what monitoring tools show, bounded. */
const REPR_CHARS = 1024;

/**
 * Builds a Celery message protocol 2 request for the task `name`, as a
 * Celery 5 client publishes one with the JSON serializer: no canvas, no
 * eta, no time limits (the Celery worker's own limits apply).
 */
export function encodeCeleryRequest(
  name: string,
  payload: Payload | undefined,
  options: EncodeCeleryRequestOptions,
): Message {
  const [args, kwargs] = celeryArgumentsOf(payload);
  const now = options.now ?? Date.now();
  const embed = { callbacks: null, errbacks: null, chain: null, chord: null };
  const message: Message = {
    body: encoder.encode(JSON.stringify([args, kwargs, embed])),
    properties: {
      contentType: CONTENT_TYPE,
      contentEncoding: "utf-8",
      correlationId: options.taskId,
      replyTo: options.replyTo,
      persistent: true,
      timestamp: Math.floor(now / 1000),
      headers: {
        lang: "js",
        task: name,
        id: options.taskId,
        shadow: null,
        eta: null,
        expires: options.expires === undefined ? null : isoTime(options.expires),
        group: null,
        group_index: null,
        retries: options.retries ?? 0,
        timelimit: [null, null],
        root_id: options.taskId,
        parent_id: null,
        argsrepr: boundText(JSON.stringify(args), REPR_CHARS),
        kwargsrepr: boundText(JSON.stringify(kwargs), REPR_CHARS),
        origin: options.origin ?? "task-system",
        ignore_result: false,
        [SENT_AT_HEADER]: now,
      },
    },
  };
  if (options.expires !== undefined) {
    message.properties.expiration = String(Math.max(1, Math.ceil(options.expires - now)));
  }
  return message;
}
