/**
 * The worker side of the control channel: a queue of the worker's own,
 * `<queue>.control.<8 hex digits>`, exclusive and auto-deleted, bound to the
 * fanout exchange {@linkcode CONTROL_EXCHANGE}. A ping on the exchange
 * (`{"kind": "ping"}` with `reply_to` and `correlation_id`) is answered with
 * the worker's {@linkcode WorkerInfo}, published to `reply_to` through the
 * default exchange. The queue disappears with the worker's connection, so
 * only live workers answer.
 *
 * @module
 */

import type { Broker, Consumer, Delivery } from "../../core/broker/broker.ts";
import {
  CONTROL_EXCHANGE,
  controlQueueOf,
  encodeWorkerInfo,
  parseControlRequest,
  type WorkerInfo,
} from "../../core/contract/mod.ts";
import type { Logger } from "../../core/log.ts";

/** Options for {@linkcode serveControl}. */
export interface ServeControlOptions {
  /** The worker's work queue; its control queue is named after it. */
  queue: string;
  /** What to answer a ping with, at the time of the ping. */
  info: () => WorkerInfo;
  /** Whether to answer a control message from its sender; others are ignored. @default {() => true} */
  accept?: (delivery: Delivery) => boolean;
  log: Logger;
}

/** A worker's control queue, consumed. */
export interface ControlChannel extends Consumer {
  /** The control queue's name. */
  readonly queue: string;
}

/**
 * Declares the control exchange and the worker's control queue, binds them,
 * and answers pings until cancelled. Any other message is acknowledged and
 * ignored, so a bad control message never blocks the queue.
 */
export async function serveControl(
  broker: Broker,
  options: ServeControlOptions,
): Promise<ControlChannel> {
  const queue = controlQueueOf(options.queue);
  await broker.declareExchange(CONTROL_EXCHANGE, "fanout", { durable: true });
  await broker.declareQueue(queue, { durable: false, exclusive: true, autoDelete: true });
  await broker.bindQueue(queue, CONTROL_EXCHANGE);

  const answer = async (delivery: Delivery) => {
    const request = parseControlRequest(delivery.body);
    const { replyTo, correlationId } = delivery.properties;
    if (!request.ok || !replyTo || !(options.accept?.(delivery) ?? true)) {
      options.log.debug("Ignored a control message", {
        error: !request.ok
          ? request.error.message
          : replyTo
          ? `its sender '${delivery.properties.userId}' may not ask`
          : "it has no reply_to",
      });
      return;
    }
    await broker.publish(replyTo, encodeWorkerInfo(options.info(), correlationId));
  };

  const consumer = await broker.consume(queue, (delivery) => {
    answer(delivery)
      .catch((error) => options.log.debug("Could not answer a ping", { error }))
      .finally(() => broker.ack(delivery));
  }, { prefetch: 4 });
  return { queue, cancel: () => consumer.cancel() };
}
