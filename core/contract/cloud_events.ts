/**
 * Events that trigger functions: CloudEvents 1.0 on AMQP 0-9-1, published to
 * the durable topic exchange {@linkcode CLOUD_EVENTS_EXCHANGE} with the
 * event's `type` as routing key. Each function's one queue is bound there
 * with the topic patterns of its `triggers` (functions/registry.yaml). Both
 * of the CloudEvents AMQP binding's modes are read (docs/events.md):
 *
 * - structured: `content_type: application/cloudevents+json`, the whole
 *   event as the JSON body;
 * - binary: the attributes as headers (`ce-type`, or the AMQP binding's
 *   `cloudEvents:type` and `cloudEvents_type`), the data as the body with
 *   its own `content_type`.
 *
 * Everything here is read as hostile: each attribute is checked for its
 * type and size, the type must be the routing key it came with, and the
 * data must be one JSON object (it becomes the handler's payload).
 *
 * @module
 */

import { decodeJson } from "./json.ts";
import {
  boundText,
  CONTENT_TYPE,
  isJsonContentType,
  isPlainObject,
  type Message,
  type Parsed,
  refuse,
} from "./message.ts";

/** The durable topic exchange events are published to, with their type as routing key. */
export const CLOUD_EVENTS_EXCHANGE = "events";

/** The content type of an event in structured mode. */
export const CLOUD_EVENTS_CONTENT_TYPE = "application/cloudevents+json";

/** The only CloudEvents version read and written. */
export const CLOUD_EVENTS_SPEC_VERSION = "1.0";

/** The header prefix of binary mode as this product writes it. */
export const CE_HEADER_PREFIX = "ce-";

/** Every prefix of binary mode that is read: ours and the AMQP binding's two spellings. */
export const CE_HEADER_PREFIXES: readonly string[] = ["ce-", "cloudEvents:", "cloudEvents_"];

/**
 * Hops a chain of functions may take: an event that arrives with this many
 * (a function's result emitted as an event, whose function's result is
 * emitted, and so on) is dead-lettered (`hop_limit`) instead of run.
 */
export const MAX_EVENT_HOPS = 16;

/** The error type of an event dead-lettered at the hop limit. */
export const HOP_LIMIT_ERROR = "HopLimit";

/**
 * The error type of an event that reached a function through a binding of
 * its queue that none of its triggers makes: one left from a trigger since
 * removed, or bound by hand. Dead-lettered `untriggered`, unrun.
 */
export const UNTRIGGERED_ERROR = "Untriggered";

/** The error type of an event that breaks this contract. */
export const INVALID_EVENT = "InvalidEvent";

/** Longest `id`, in characters. */
export const MAX_EVENT_ID_CHARS = 256;

/** Longest `source`, `subject` and `dataschema`, in characters. */
export const MAX_EVENT_TEXT_CHARS = 512;

/** Longest event type: an AMQP routing key is a short string. */
export const MAX_EVENT_TYPE_CHARS = 255;

/** Most attributes an event may carry, extensions included. */
export const MAX_EVENT_ATTRIBUTES = 32;

/** One word of an event type or pattern: letters, digits, `_` and `-`. */
const WORD = "[A-Za-z0-9_-]{1,64}";

/** An event type: words separated by dots, such as `order.created`. */
export const EVENT_TYPE_PATTERN = new RegExp(`^${WORD}(\\.${WORD})*$`);

/** A trigger or grant: words, `*` (one word) and `#` (any words), separated by dots. */
const TOPIC_PATTERN = new RegExp(`^(${WORD}|\\*|#)(\\.(${WORD}|\\*|#))*$`);

/** An extension attribute's name, as CloudEvents 1.0 allows it. */
const EXTENSION_NAME = /^[a-z0-9]{1,20}$/;

/** RFC 3339 date-time, as CloudEvents' `time` takes it. */
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$/;

/** Printable text: no control characters, which logs and headers must not carry. */
// deno-lint-ignore no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

/** The attributes of an event: what the handler gets as `context.event`. */
export interface EventAttributes {
  specversion: string;
  id: string;
  source: string;
  type: string;
  subject?: string;
  /** RFC 3339. */
  time?: string;
  datacontenttype?: string;
  dataschema?: string;
  /** Functions the event went through before (extension `hops`): 0 for an event emitted by hand. */
  hops: number;
  /** Extension `deadline` (RFC 3339): not run after this time, dead-lettered `expired`. */
  deadline?: string;
  /** W3C trace context (the CloudEvents distributed-tracing extension). */
  traceparent?: string;
  tracestate?: string;
}

/** An event, read: its attributes and its data, a JSON object (the handler's payload). */
export interface CloudEvent extends EventAttributes {
  data: Record<string, unknown>;
}

/** Whether `type` is an event type (no wildcards). */
export function isEventType(type: unknown): type is string {
  return typeof type === "string" && type.length <= MAX_EVENT_TYPE_CHARS &&
    EVENT_TYPE_PATTERN.test(type);
}

/**
 * Why `pattern` is not a topic pattern a trigger or grant may use, or
 * `undefined` when it is one. `#.#` is refused: it says nothing `#` does
 * not, and the permission built from it would not be exact.
 */
export function topicPatternProblem(pattern: unknown): string | undefined {
  if (
    typeof pattern !== "string" || pattern.length > MAX_EVENT_TYPE_CHARS ||
    !TOPIC_PATTERN.test(pattern)
  ) {
    return `${
      JSON.stringify(typeof pattern === "string" ? boundText(pattern, 80) : pattern)
    } is not a topic pattern: use words of letters, digits, _ and - separated by dots, * for one word and # for any number, such as order.created or order.*`;
  }
  if (/(^|\.)#\.#(\.|$)/.test(pattern)) {
    return `'${pattern}' has # twice in a row: one # matches the same`;
  }
  return undefined;
}

/** Whether the event type `type` matches the topic pattern `pattern`, as RabbitMQ routes it. */
export function topicMatches(pattern: string, type: string): boolean {
  const words = type.split(".");
  const parts = pattern.split(".");
  const match = (p: number, w: number): boolean => {
    if (p === parts.length) return w === words.length;
    if (parts[p] === "#") {
      for (let skip = w; skip <= words.length; skip++) if (match(p + 1, skip)) return true;
      return false;
    }
    if (w === words.length) return false;
    return (parts[p] === "*" || parts[p] === words[w]) && match(p + 1, w + 1);
  };
  return match(0, 0);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\#-]/g, "\\$&");
}

/**
 * A regular expression (RabbitMQ's topic permissions take Erlang's PCRE) that
 * matches exactly the event types `pattern` matches: a publisher granted it
 * may emit those types and no other.
 */
export function topicPatternRegex(pattern: string): string {
  // No braces: RabbitMQ expands {username} and the like in topic permissions.
  const WORD = "[A-Za-z0-9_-]+";
  const parts = pattern.split(".");
  if (parts.length === 1 && parts[0] === "#") return `^${WORD}(\\.${WORD})*$`;
  let regex = "";
  parts.forEach((part, index) => {
    const first = index === 0;
    const word = part === "*" ? WORD : escapeRegExp(part);
    if (part === "#") {
      // It takes the dot on its side of the pattern with it, so that it may match nothing.
      regex += first ? `(${WORD}\\.)*` : `(\\.${WORD})*`;
      return;
    }
    const afterLeadingHash = index === 1 && parts[0] === "#";
    regex += first || afterLeadingHash ? word : `\\.${word}`;
  });
  return `^${regex}$`;
}

/** A regular expression matching exactly the strings of `literals` (a binding key, a type). */
export function exactRegex(literals: readonly string[]): string {
  return literals.length === 0 ? "^$" : `^(${literals.map(escapeRegExp).join("|")})$`;
}

/**
 * The header a binary-mode event carries `name` in, under any prefix that
 * is read, and its value. Found once: an event that spells one attribute
 * under two prefixes is refused by {@linkcode parseCloudEvent}.
 */
function binaryAttributes(
  headers: Record<string, unknown>,
): Parsed<Record<string, unknown>> {
  const attributes: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(headers)) {
    const prefix = CE_HEADER_PREFIXES.find((p) => key.toLowerCase().startsWith(p.toLowerCase()));
    if (prefix === undefined) continue;
    const name = key.slice(prefix.length).toLowerCase();
    if (Object.hasOwn(attributes, name)) {
      return refuse(
        INVALID_EVENT,
        `Cannot accept the event as it carries '${
          boundText(name, 30)
        }' twice, under two prefixes: send each attribute once`,
      );
    }
    attributes[name] = value instanceof Uint8Array ? new TextDecoder().decode(value) : value;
  }
  return { ok: true, value: attributes };
}

/** Whether `message` claims to be a CloudEvent, in either mode. */
export function isCloudEventMessage(message: Message): boolean {
  const type = message.properties.contentType?.split(";")[0].trim().toLowerCase();
  if (type === CLOUD_EVENTS_CONTENT_TYPE) return true;
  const headers = message.properties.headers;
  if (headers === undefined) return false;
  for (const prefix of CE_HEADER_PREFIXES) {
    if (headers[`${prefix}specversion`] !== undefined) return true;
  }
  return false;
}

/** Options for {@linkcode parseCloudEvent}. */
export interface ParseCloudEventOptions {
  /** Largest body accepted, in bytes. */
  maxBytes: number;
  /** The routing key it came with through the events exchange: its type must be this. */
  routingKey?: string;
}

function text(
  attributes: Record<string, unknown>,
  name: string,
  max: number,
  required: boolean,
): Parsed<string | undefined> {
  const value = attributes[name];
  if (value === undefined || value === null) {
    return required
      ? refuse(
        INVALID_EVENT,
        `Cannot accept the event as it has no '${name}': every event needs one`,
      )
      : { ok: true, value: undefined };
  }
  if (typeof value !== "string" || value === "" || value.length > max || CONTROL.test(value)) {
    return refuse(
      INVALID_EVENT,
      `Cannot accept the event as its '${name}' is ${
        typeof value === "string" ? `'${boundText(value, 60)}'` : `of type ${typeof value}`
      }: give printable text of 1 to ${max} characters`,
    );
  }
  return { ok: true, value };
}

function timestamp(attributes: Record<string, unknown>, name: string): Parsed<string | undefined> {
  const read = text(attributes, name, 40, false);
  if (!read.ok || read.value === undefined) return read;
  if (!RFC3339.test(read.value) || Number.isNaN(Date.parse(read.value))) {
    return refuse(
      INVALID_EVENT,
      `Cannot accept the event as its '${name}' is '${read.value}': give an RFC 3339 time, such as 2026-12-06T10:00:00Z`,
    );
  }
  return read;
}

/**
 * Reads an event from a message in either mode; see the module
 * documentation. Refuses (error type {@linkcode INVALID_EVENT}, or
 * `MessageTooLarge`) anything that is not a valid CloudEvents 1.0 event
 * with a JSON object (or no data).
 */
export function parseCloudEvent(message: Message, options: ParseCloudEventOptions): Parsed<
  CloudEvent
> {
  const { body, properties } = message;
  if (body.byteLength > options.maxBytes) {
    return refuse(
      "MessageTooLarge",
      `Cannot accept the event as its body has ${body.byteLength} bytes: the limit is ${options.maxBytes}`,
    );
  }
  if (
    properties.contentEncoding !== undefined &&
    !["identity", "utf-8", "utf8"].includes(properties.contentEncoding.toLowerCase())
  ) {
    return refuse(
      INVALID_EVENT,
      `Cannot accept the event as its content_encoding is '${
        boundText(properties.contentEncoding, 40)
      }': send it uncompressed`,
    );
  }
  const contentType = properties.contentType?.split(";")[0].trim().toLowerCase();
  let attributes: Record<string, unknown>;
  let data: unknown;
  if (contentType === CLOUD_EVENTS_CONTENT_TYPE) {
    const json = decodeJson(body, { what: "the event", maxBytes: options.maxBytes });
    if (!json.ok) return { ok: false, error: { ...json.error, type: INVALID_EVENT } };
    if (!isPlainObject(json.value)) {
      return refuse(INVALID_EVENT, "Cannot accept the event as its body is not a JSON object");
    }
    attributes = { ...json.value };
    if (attributes.data_base64 !== undefined) {
      return refuse(
        INVALID_EVENT,
        "Cannot accept the event as its data is binary (data_base64): send JSON data, an object",
      );
    }
    data = attributes.data;
    delete attributes.data;
  } else {
    const read = binaryAttributes(properties.headers ?? {});
    if (!read.ok) return read;
    attributes = read.value;
    if (attributes.datacontenttype !== undefined) {
      return refuse(
        INVALID_EVENT,
        "Cannot accept the event as binary mode carries datacontenttype as a header: set content_type instead",
      );
    }
    if (properties.contentType !== undefined) attributes.datacontenttype = properties.contentType;
    if (body.byteLength > 0) {
      if (!isJsonData(properties.contentType)) {
        return refuse(
          INVALID_EVENT,
          `Cannot accept the event as its data's content_type is ${
            properties.contentType === undefined
              ? "missing"
              : `'${boundText(properties.contentType, 60)}'`
          }: send JSON data with content_type ${CONTENT_TYPE}`,
        );
      }
      const json = decodeJson(body, { what: "the event's data", maxBytes: options.maxBytes });
      if (!json.ok) return { ok: false, error: { ...json.error, type: INVALID_EVENT } };
      data = json.value;
    }
  }
  return checkAttributes(attributes, data, options.routingKey);
}

/** Whether a datacontenttype names JSON (`application/json`, or any `+json`). */
function isJsonData(contentType: string | undefined): boolean {
  if (contentType === undefined) return false;
  const type = contentType.split(";")[0].trim().toLowerCase();
  return isJsonContentType(type) || /^[a-z0-9.+-]+\/[a-z0-9.+-]*\+json$/.test(type);
}

function checkAttributes(
  attributes: Record<string, unknown>,
  data: unknown,
  routingKey: string | undefined,
): Parsed<CloudEvent> {
  const names = Object.keys(attributes);
  if (names.length > MAX_EVENT_ATTRIBUTES) {
    return refuse(
      INVALID_EVENT,
      `Cannot accept the event as it has ${names.length} attributes: the limit is ${MAX_EVENT_ATTRIBUTES}`,
    );
  }
  for (const name of names) {
    if (!EXTENSION_NAME.test(name)) {
      return refuse(
        INVALID_EVENT,
        `Cannot accept the event as its attribute '${
          boundText(name, 30)
        }' is no CloudEvents name: use lower-case letters and digits, at most 20`,
      );
    }
  }
  if (attributes.specversion !== CLOUD_EVENTS_SPEC_VERSION) {
    return refuse(
      INVALID_EVENT,
      `Cannot accept the event as its specversion is ${
        JSON.stringify(
          typeof attributes.specversion === "string"
            ? boundText(attributes.specversion, 20)
            : attributes.specversion ?? null,
        )
      }: send CloudEvents ${CLOUD_EVENTS_SPEC_VERSION}`,
    );
  }
  const id = text(attributes, "id", MAX_EVENT_ID_CHARS, true);
  if (!id.ok) return id;
  const source = text(attributes, "source", MAX_EVENT_TEXT_CHARS, true);
  if (!source.ok) return source;
  const type = text(attributes, "type", MAX_EVENT_TYPE_CHARS, true);
  if (!type.ok) return type;
  if (!isEventType(type.value)) {
    return refuse(
      INVALID_EVENT,
      `Cannot accept the event as its type '${
        boundText(type.value!, 60)
      }' is not an event type: use words of letters, digits, _ and - separated by dots`,
    );
  }
  if (routingKey !== undefined && routingKey !== type.value) {
    return refuse(
      INVALID_EVENT,
      `Cannot accept the event as its type '${type.value}' is not the routing key '${
        boundText(routingKey, 60)
      }' it was published with: publish each event with its type as routing key`,
    );
  }
  const event: CloudEvent = {
    specversion: CLOUD_EVENTS_SPEC_VERSION,
    id: id.value!,
    source: source.value!,
    type: type.value!,
    hops: 0,
    data: {},
  };
  for (const [name, max] of [["subject", MAX_EVENT_TEXT_CHARS], ["dataschema", 512]] as const) {
    const read = text(attributes, name, max, false);
    if (!read.ok) return read;
    if (read.value !== undefined) event[name] = read.value;
  }
  for (const name of ["time", "deadline"] as const) {
    const read = timestamp(attributes, name);
    if (!read.ok) return read;
    if (read.value !== undefined) event[name] = read.value;
  }
  for (const name of ["datacontenttype", "traceparent", "tracestate"] as const) {
    const read = text(attributes, name, 512, false);
    if (!read.ok) return read;
    if (read.value !== undefined) event[name] = read.value;
  }
  if (
    event.datacontenttype !== undefined && data !== undefined && !isJsonData(event.datacontenttype)
  ) {
    return refuse(
      INVALID_EVENT,
      `Cannot accept the event as its datacontenttype is '${
        boundText(event.datacontenttype, 60)
      }': send JSON data (${CONTENT_TYPE})`,
    );
  }
  const hops = attributes.hops === undefined ? 0 : Number(attributes.hops);
  if (!Number.isSafeInteger(hops) || hops < 0 || hops > 1000) {
    return refuse(
      INVALID_EVENT,
      `Cannot accept the event as its hops is ${
        JSON.stringify(String(attributes.hops).slice(0, 20))
      }: give a whole number from 0 to 1000, or leave it out`,
    );
  }
  event.hops = hops;
  if (data !== undefined && data !== null) {
    if (!isPlainObject(data)) {
      return refuse(
        INVALID_EVENT,
        `Cannot run a function on the event as its data is ${
          Array.isArray(data) ? "an array" : typeof data
        }: send a JSON object, which becomes the handler's payload`,
      );
    }
    event.data = data;
  }
  return { ok: true, value: event };
}

/** How an event is written: its attributes in the body with its data, or in headers. */
export type CloudEventMode = "structured" | "binary";

const encoder = new TextEncoder();

/** The attributes of `event` that are set, for a header or a JSON body. */
function attributesOf(event: EventAttributes): Record<string, string | number> {
  const out: Record<string, string | number> = {};
  for (const [name, value] of Object.entries(event)) {
    if (value === undefined || name === "data") continue;
    if (name === "hops" && value === 0) continue;
    out[name] = value as string | number;
  }
  return out;
}

/**
 * The message of `event` in `mode`: persistent, with the event's id as
 * `message_id`, a `traceparent` header when it carries one (so tracing
 * reads it as it reads a request's), and in binary mode a `ce-` header per
 * attribute.
 */
export function encodeCloudEvent(event: CloudEvent, mode: CloudEventMode = "structured"): Message {
  const attributes = attributesOf(event);
  const headers: Record<string, unknown> = {};
  if (event.traceparent !== undefined) headers.traceparent = event.traceparent;
  if (event.tracestate !== undefined) headers.tracestate = event.tracestate;
  if (mode === "structured") {
    return {
      body: encoder.encode(JSON.stringify({ ...attributes, data: event.data })),
      properties: {
        contentType: CLOUD_EVENTS_CONTENT_TYPE,
        messageId: event.id,
        persistent: true,
        headers,
      },
    };
  }
  const { datacontenttype, ...rest } = attributes;
  for (const [name, value] of Object.entries(rest)) headers[`${CE_HEADER_PREFIX}${name}`] = value;
  return {
    body: encoder.encode(JSON.stringify(event.data)),
    properties: {
      contentType: String(datacontenttype ?? CONTENT_TYPE),
      messageId: event.id,
      persistent: true,
      headers,
    },
  };
}

/**
 * The id of the event a function's result is emitted as, from the id (and
 * source) of what triggered it and the function's name: the same for every
 * attempt and every redelivery, so a retried step emits the same event
 * again, never a second distinct one. A UUID (version 8) from SHA-256.
 */
export async function chainedEventId(
  functionName: string,
  triggerSource: string,
  triggerId: string,
): Promise<string> {
  const digest = new Uint8Array(
    await crypto.subtle.digest(
      "SHA-256",
      encoder.encode(`${functionName}\u0000${triggerSource}\u0000${triggerId}`),
    ),
  );
  const bytes = digest.slice(0, 16);
  bytes[6] = (bytes[6] & 0x0f) | 0x80;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((byte) => byte.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${
    hex.slice(20)
  }`;
}

/** The `source` of the events a function's results are emitted as. */
export function functionSource(functionName: string): string {
  return `/functions/${functionName}`;
}
