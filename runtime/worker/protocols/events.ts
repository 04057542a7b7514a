/**
 * Events as a worker reads them (docs/events.md): a CloudEvent, in either
 * mode, becomes one run of the function with the event's data as payload
 * and its attributes as `context.event`. No one is answered, unless the
 * emitter set `reply_to` (a reply destination, as for a request): then each
 * run, down the chain too, is reported there as a reply. The record of
 * answers keeps each event run to success by its `source` and `id` (and
 * the broker user who published it), so a copy of it, redelivered or
 * published again with the same id, is settled without running again, on
 * this replica; a failure is not kept, so a retry or a replayed dead letter
 * runs. An event that went through {@linkcode MAX_EVENT_HOPS} functions is
 * dead-lettered (`hop_limit`) instead of run: a loop of functions ends.
 * One that came through a binding none of the function's triggers makes
 * (a trigger since removed stays bound: AMQP 0-9-1 cannot list a queue's
 * bindings, so no worker can find the ones it no longer declares) is
 * dead-lettered (`untriggered`) instead of run: {@linkcode untriggeredError}.
 *
 * The route events come through is the topic exchange
 * {@linkcode CLOUD_EVENTS_EXCHANGE}, bound to the function's queue by
 * {@linkcode declareEventRoute} with its triggers. Who may publish which
 * types there is the broker's topic permissions' business, so an event
 * that came through it runs whoever sent it; one published straight to
 * the queue needs a sender the function accepts, as a request does.
 *
 * @module
 */

import type { Broker, Delivery } from "../../../core/broker/broker.ts";
import {
  boundText,
  CLOUD_EVENTS_EXCHANGE,
  HOP_LIMIT_ERROR,
  isCloudEventMessage,
  MAX_EVENT_HOPS,
  parseCloudEvent,
  type TaskError,
  topicMatches,
  UNTRIGGERED_ERROR,
} from "../../../core/contract/mod.ts";
import type { FunctionInfo } from "../../define_function.ts";
import {
  type Answer,
  type AnswerFacts,
  NATIVE_PROTOCOL,
  protocolOf,
  type ReadRequest,
  type ReadRequestOptions,
  type UnreadRequest,
  type WorkerProtocol,
} from "./protocol.ts";

/** The record of answers' fingerprint of every event: an event is one by its source and id. */
const EVENT_FINGERPRINT = "cloudevent";

/** The protocol of events; see the module documentation. */
export const EVENT_PROTOCOL: WorkerProtocol = Object.freeze(
  {
    replyKind: "reply",
    logFields: Object.freeze({ protocol: "event" }),
    remembersAnswers: true,
    routedSender(delivery: Delivery) {
      if (delivery.exchange !== CLOUD_EVENTS_EXCHANGE) return undefined;
      return delivery.properties.userId ?? `events via exchange '${CLOUD_EVENTS_EXCHANGE}'`;
    },
    read(
      delivery: Delivery,
      info: FunctionInfo,
      options: ReadRequestOptions,
    ): ReadRequest | UnreadRequest {
      const parsed = parseCloudEvent(delivery, {
        maxBytes: options.maxBytes,
        // A retry comes back through the default exchange, as this worker's user.
        routingKey: delivery.exchange === CLOUD_EVENTS_EXCHANGE ? delivery.routingKey : undefined,
      });
      if (!parsed.ok) return { ok: false, error: parsed.error };
      const { data, ...event } = parsed.value;
      if (event.hops >= MAX_EVENT_HOPS) {
        return {
          ok: false,
          reason: "hop_limit",
          error: {
            type: HOP_LIMIT_ERROR,
            message:
              `Cannot run event '${event.type}' (id '${event.id}') as it went through ${event.hops} functions, the limit (MAX_EVENT_HOPS ${MAX_EVENT_HOPS}): a chain of functions loops; break the loop of their triggers and emits`,
          },
        };
      }
      return {
        ok: true,
        request: {
          task: info.name,
          payload: data,
          progress: false,
          retry: {},
          ...(event.deadline !== undefined && { deadline: Date.parse(event.deadline) }),
        },
        timeoutMs: info.timeoutMs,
        taskId: event.id,
        record: { id: `${event.source}\u0000${event.id}`, fingerprint: EVENT_FINGERPRINT },
        event,
      };
    },
    answer(delivery: Delivery, facts: AnswerFacts): Answer {
      // An emitter that set reply_to gets a run report, as a caller gets a
      // reply; others get nothing. Only a success is kept, so that a
      // failure's retry or replayed dead letter runs.
      const native = NATIVE_PROTOCOL.answer(delivery, facts)!;
      return {
        ...(delivery.properties.replyTo && { message: native.message }),
        ...(facts.status === "success" && { kept: native.kept }),
      };
    },
  } satisfies WorkerProtocol,
);

/**
 * Why `delivery` may not run as the function `name` with `triggers`: it
 * came through the events exchange with a routing key none of them
 * matches. `undefined` when it may run: it matches one, or it did not come
 * through that exchange (a retry, a replayed dead letter, an event published
 * straight to the queue, which the sender check judges instead).
 */
export function untriggeredError(
  delivery: Delivery,
  name: string,
  triggers: readonly string[],
): TaskError | undefined {
  if (delivery.exchange !== CLOUD_EVENTS_EXCHANGE) return undefined;
  const type = delivery.routingKey;
  if (triggers.some((pattern) => topicMatches(pattern, type))) return undefined;
  return {
    type: UNTRIGGERED_ERROR,
    message: `Cannot run event type '${
      boundText(type, 255)
    }' as function '${name}' has no trigger that matches it (${
      triggers.length === 0 ? "it has none" : `its triggers: ${triggers.join(", ")}`
    }): its queue keeps a binding of a trigger since removed, or bound by hand; remove that binding of exchange '${CLOUD_EVENTS_EXCHANGE}' (docs/events.md, "Removing a trigger")`,
  };
}

/**
 * Binds the function's queue to the events exchange with each of its
 * triggers, declaring the exchange if it is missing. At every start, so a
 * queue made again gets its bindings back; the broker's topic permissions
 * (read, on binding keys) let a function's user bind only its own triggers.
 * A trigger removed from the registry stays bound until unbound by hand;
 * what comes through it is refused ({@linkcode untriggeredError}).
 */
export async function declareEventRoute(
  broker: Broker,
  queue: string,
  triggers: readonly string[],
): Promise<void> {
  if (triggers.length === 0) return;
  await broker.declareExchange(CLOUD_EVENTS_EXCHANGE, "topic", { durable: true });
  for (const pattern of triggers) await broker.bindQueue(queue, CLOUD_EVENTS_EXCHANGE, pattern);
}

/** The protocol `delivery` speaks: an event's, else that of {@linkcode protocolOf}. */
export function protocolFor(delivery: Delivery): WorkerProtocol {
  return isCloudEventMessage(delivery) ? EVENT_PROTOCOL : protocolOf(delivery);
}
