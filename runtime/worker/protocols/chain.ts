/**
 * Chaining: a function that declares `emits` has each successful result
 * emitted as an event of that type, so that one event starts a pipeline of
 * functions (docs/events.md). The event's `source` is the function, its id
 * is derived from what triggered the run (the event's source and id, or
 * the call's task id), so a retried or redelivered step emits the same
 * event again and never a second distinct one; it carries one hop more
 * than its trigger and the trigger's trace context.
 *
 * @module
 */

import { type Broker, PublishForbiddenError } from "../../../core/broker/broker.ts";
import {
  chainedEventId,
  CLOUD_EVENTS_EXCHANGE,
  CLOUD_EVENTS_SPEC_VERSION,
  type CloudEvent,
  CONTENT_TYPE,
  encodeCloudEvent,
  type EventAttributes,
  functionSource,
  isPlainObject,
  type TaskError,
} from "../../../core/contract/mod.ts";

/** What a successful run that emits knows of what triggered it. */
export interface ChainTrigger {
  /** The triggering event, for a run of an event. */
  event?: EventAttributes;
  /** The call's task id, for a call. */
  taskId: string | null;
  /** The broker user who sent the trigger, when known. */
  sender?: string;
  /** The W3C trace context the emitted event continues: the run's span, else the trigger's. */
  traceparent?: string;
  /**
   * Where the trigger's emitter asked for run reports, and its correlation
   * id: the emitted event carries both on, so its runs are reported too.
   */
  replyTo?: string;
  correlationId?: string;
  resultJson: string;
}

/** Emits a function's results as events; see the module documentation. */
export interface ChainEmitter {
  /** The type emitted. */
  readonly type: string;
  /**
   * Emits the result of a successful run, confirmed by the broker; resolves
   * with an error when the broker's permissions refuse it (the function's
   * user may not emit this type), and rejects when the broker is gone.
   */
  emit(trigger: ChainTrigger): Promise<TaskError | undefined>;
}

/** The event a result is emitted as; a result that is not a JSON object becomes `{ result }`. */
export async function chainedEvent(
  functionName: string,
  type: string,
  trigger: ChainTrigger,
): Promise<CloudEvent> {
  const result: unknown = JSON.parse(trigger.resultJson);
  const triggerSource = trigger.event?.source ?? `/callers/${trigger.sender ?? "unknown"}`;
  const triggerId = trigger.event?.id ?? trigger.taskId ?? crypto.randomUUID();
  const event: CloudEvent = {
    specversion: CLOUD_EVENTS_SPEC_VERSION,
    id: await chainedEventId(functionName, triggerSource, triggerId),
    source: functionSource(functionName),
    type,
    time: new Date().toISOString(),
    datacontenttype: CONTENT_TYPE,
    hops: (trigger.event?.hops ?? 0) + 1,
    data: isPlainObject(result) ? result : { result },
  };
  if (trigger.event?.subject !== undefined) event.subject = trigger.event.subject;
  if (trigger.event?.deadline !== undefined) event.deadline = trigger.event.deadline;
  // The run's own span when traced (a child of the trigger's), else the trigger's.
  const traceparent = trigger.traceparent ?? trigger.event?.traceparent;
  if (traceparent !== undefined) event.traceparent = traceparent;
  return event;
}

/** Makes the emitter of `functionName`'s results as events of `type`. */
export function createChainEmitter(
  broker: Broker,
  functionName: string,
  type: string,
): ChainEmitter {
  return {
    type,
    async emit(trigger) {
      const event = await chainedEvent(functionName, type, trigger);
      const message = encodeCloudEvent(event);
      if (trigger.replyTo) {
        message.properties.replyTo = trigger.replyTo;
        message.properties.correlationId = trigger.correlationId ?? trigger.event?.id;
      }
      try {
        await broker.publishToExchange(CLOUD_EVENTS_EXCHANGE, message, type, { isolated: true });
      } catch (error) {
        if (!(error instanceof PublishForbiddenError)) throw error;
        return {
          type: "EmitRefused",
          message:
            `Cannot emit the result as event '${type}' as the broker refused it to broker user '${broker.user}': give the function 'emits: ${type}' in functions/registry.yaml and deploy the broker's definitions again (docs/events.md)`,
        };
      }
      return undefined;
    },
  };
}
