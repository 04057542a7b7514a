/**
 * Emitting events (docs/events.md): a CloudEvents 1.0 event published to
 * the events exchange with its type as routing key, persistent and
 * confirmed by the broker. Every function whose triggers match the type
 * runs once with the data as its payload. No one answers: `emit` resolves
 * with the event's id once the broker has it.
 *
 * @module
 */

import { type Broker, PublishForbiddenError } from "../core/broker/mod.ts";
import {
  CLOUD_EVENTS_EXCHANGE,
  CLOUD_EVENTS_SPEC_VERSION,
  type CloudEvent,
  type CloudEventMode,
  CONTENT_TYPE,
  DEFAULT_MAX_MESSAGE_BYTES,
  encodeCloudEvent,
  isEventType,
  isPlainObject,
  parseCloudEvent,
} from "../core/contract/mod.ts";

/** The brokers whose events exchange is known to exist. */
const declared = new WeakSet<Broker>();

/** Options for {@linkcode emitEvent} (and `TaskClient.emit`). */
export interface EmitOptions {
  /**
   * The event's id: give the same one when publishing the same event again
   * (after a failed publish, say), so that its functions run it once.
   * @default {a new UUID}
   */
  id?: string;
  /** Who emits it, a URI-reference. @default {`/clients/<broker user>`} */
  source?: string;
  /** What it is about, such as an order's id. */
  subject?: string;
  /** When it happened. @default {now} */
  time?: Date | string;
  /** Not run after this time: dead-lettered `expired` instead. */
  deadline?: Date | number;
  /**
   * Structured (the event as one JSON body, `application/cloudevents+json`)
   * or binary (`ce-` headers, the data as the body).
   * @default {"structured"}
   */
  mode?: CloudEventMode;
  /** W3C trace context to continue, such as the caller's span's. */
  traceparent?: string;
  /**
   * A reply destination of yours (`replies.<32 hex>`) where each function
   * that runs the event, and each down its chain, reports its run as a
   * reply (docs/events.md, "Run reports"). Without it no one answers.
   */
  replyTo?: string;
  /** The correlation id of the run reports. @default {the event's id} */
  correlationId?: string;
}

/** The event {@linkcode emitEvent} publishes, checked; a `TypeError` says what is wrong. */
export function buildEvent(
  user: string,
  type: string,
  data: unknown = {},
  options: EmitOptions = {},
): CloudEvent {
  if (!isEventType(type)) {
    throw new TypeError(
      `Cannot emit event type ${
        JSON.stringify(String(type).slice(0, 80))
      }: use words of letters, digits, _ and - separated by dots, such as order.created`,
    );
  }
  if (!isPlainObject(data)) {
    throw new TypeError(
      `Cannot emit '${type}' with data that is ${
        Array.isArray(data) ? "an array" : data === null ? "null" : typeof data
      }: give a JSON object, which becomes each function's payload`,
    );
  }
  const time = options.time instanceof Date ? options.time.toISOString() : options.time;
  const event: CloudEvent = {
    specversion: CLOUD_EVENTS_SPEC_VERSION,
    id: options.id ?? crypto.randomUUID(),
    source: options.source ?? `/clients/${user}`,
    type,
    time: time ?? new Date().toISOString(),
    datacontenttype: CONTENT_TYPE,
    hops: 0,
    data,
  };
  if (options.subject !== undefined) event.subject = options.subject;
  if (options.deadline !== undefined) {
    event.deadline = new Date(options.deadline).toISOString();
  }
  if (options.traceparent !== undefined) event.traceparent = options.traceparent;
  // Read back as a worker will: what it would refuse is refused here, before sending.
  const check = parseCloudEvent(encodeCloudEvent(event), {
    maxBytes: DEFAULT_MAX_MESSAGE_BYTES,
    routingKey: type,
  });
  if (!check.ok) throw new TypeError(check.error.message.replace(/^Cannot accept/, "Cannot emit"));
  return event;
}

/**
 * Publishes `data` as an event of `type`; resolves with its id once the
 * broker confirmed it. Rejects with a `TypeError` for a bad type, data or
 * option, and with a `PublishForbiddenError` when this broker user may not
 * emit the type (the registry's `events.emitters` grants it).
 */
export async function emitEvent(
  broker: Broker,
  type: string,
  data?: unknown,
  options: EmitOptions = {},
): Promise<string> {
  const event = buildEvent(broker.user, type, data, options);
  const message = encodeCloudEvent(event, options.mode);
  if (options.replyTo !== undefined) {
    message.properties.replyTo = options.replyTo;
    message.properties.correlationId = options.correlationId ?? event.id;
  }
  // Creates it on a bare broker; where the definitions made it, only checks
  // it: once per broker, as it is durable, not once per event.
  if (!declared.has(broker)) {
    await broker.declareExchange(CLOUD_EVENTS_EXCHANGE, "topic", { durable: true });
    declared.add(broker);
  }
  try {
    await broker.publishToExchange(CLOUD_EVENTS_EXCHANGE, message, type, { isolated: true });
  } catch (error) {
    // Checked again next time: it may have been deleted.
    declared.delete(broker);
    if (!(error instanceof PublishForbiddenError)) throw error;
    throw new PublishForbiddenError(
      `Cannot emit '${type}' as broker user '${broker.user}' may not: grant it in functions/registry.yaml (events.emitters: { ${broker.user}: ["${type}"] }), then deploy the broker's definitions again (docs/events.md)`,
      { exchange: error.exchange, routingKey: error.routingKey },
      { cause: error },
    );
  }
  return event.id;
}
