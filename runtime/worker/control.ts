/**
 * The worker side of the control channel: a queue of the worker's own,
 * `<queue>.control.<8 hex digits>`, exclusive and auto-deleted, bound to the
 * fanout exchange {@linkcode CONTROL_EXCHANGE}. A ping on the exchange
 * (`{"kind": "ping"}` with `reply_to` and `correlation_id`) is answered with
 * the worker's {@linkcode WorkerInfo}, published to `reply_to` through the
 * default exchange, when that is a place for answers (Direct Reply-to, or a
 * caller's `replies.<32 hex>` queue). The queue disappears with the worker's
 * connection, so only live workers answer.
 *
 * A control queue the broker refuses (its queue limit reached, say) does not
 * stop the worker: it serves its tasks without answering pings, and tries
 * again with backoff until the queue opens.
 *
 * @module
 */

import { backoffDelay, type BackoffPolicy, RECONNECT_POLICY } from "../../core/backoff.ts";
import {
  type Broker,
  type Consumer,
  type Delivery,
  PublishRefusedError,
} from "../../core/broker/broker.ts";
import {
  boundText,
  CONTROL_EXCHANGE,
  controlQueueOf,
  encodeWorkerInfo,
  isReplyDestination,
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
  /** Told of each pong the broker refused (the caller's queue was full). */
  onRefused?: () => void;
  log: Logger;
  /**
   * How attempts to open a refused control queue are spaced.
   * @default {RECONNECT_POLICY}
   */
  retry?: BackoffPolicy;
}

/** A worker's control queue, consumed once it could be opened. */
export interface ControlChannel extends Consumer {
  /** The control queue's name while it is open, else `undefined`. */
  readonly queue: string | undefined;
}

/**
 * Declares the control exchange and the worker's control queue, binds them,
 * and answers pings until cancelled. Any other message is acknowledged and
 * ignored, so a bad control message never blocks the queue. Resolves after
 * the first attempt to open the queue, whether or not it succeeded; a
 * refused queue is tried again in the background.
 */
export async function serveControl(
  broker: Broker,
  options: ServeControlOptions,
): Promise<ControlChannel> {
  const { log } = options;
  let consumer: Consumer | undefined;
  let queue: string | undefined;
  let cancelled = false;
  let wake: (() => void) | undefined;

  const answer = async (delivery: Delivery) => {
    const request = parseControlRequest(delivery.body);
    const { replyTo, correlationId } = delivery.properties;
    const why = !request.ok
      ? request.error.message
      : !replyTo
      ? "it has no reply_to"
      : !isReplyDestination(replyTo, "pong")
      ? `its reply_to '${boundText(replyTo, 80)}' is not Direct Reply-to or a reply queue`
      : !(options.accept?.(delivery) ?? true)
      ? `its sender '${delivery.properties.userId}' may not ask`
      : undefined;
    if (why !== undefined) {
      log.debug("Ignored a control message", { error: why });
      return;
    }
    try {
      await broker.publish(replyTo!, encodeWorkerInfo(options.info(), correlationId));
    } catch (error) {
      if (error instanceof PublishRefusedError) options.onRefused?.();
      throw error;
    }
  };

  const open = async () => {
    const name = controlQueueOf(options.queue);
    await broker.declareExchange(CONTROL_EXCHANGE, "fanout", { durable: true });
    await broker.declareQueue(name, { durable: false, exclusive: true, autoDelete: true });
    let started: Consumer;
    try {
      await broker.bindQueue(name, CONTROL_EXCHANGE);
      started = await broker.consume(name, (delivery) => {
        answer(delivery)
          .catch((error) => log.debug("Could not answer a ping", { error }))
          .finally(() => broker.ack(delivery));
      }, { prefetch: 4 });
    } catch (error) {
      // Each attempt names a new queue: one that failed must not hold a place in the limit.
      await broker.deleteQueue(name).catch(() => {});
      throw error;
    }
    if (cancelled) {
      await started.cancel().catch(() => {});
      return;
    }
    consumer = started;
    queue = name;
  };

  const keepTrying = async (first: unknown) => {
    let failures = 1;
    let error = first;
    while (!cancelled) {
      const delay = backoffDelay(failures, options.retry ?? RECONNECT_POLICY);
      log.warn(
        "Cannot open the control queue; serving tasks, but not answering pings until it opens",
        {
          attempt: failures,
          retry_in_ms: delay,
          error,
        },
      );
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delay);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = undefined;
      if (cancelled) return;
      try {
        await open();
        log.info("Opened the control queue: answering pings", { control_queue: queue });
        return;
      } catch (next) {
        failures++;
        error = next;
      }
    }
  };

  // Once the connection ends, the worker starts over on a new one anyway.
  broker.closed.then(() => {
    cancelled = true;
    wake?.();
  });
  try {
    await open();
  } catch (error) {
    keepTrying(error).catch((next) =>
      log.error("Stopped opening the control queue", { error: next })
    );
  }

  return {
    get queue() {
      return queue;
    },
    async cancel() {
      cancelled = true;
      wake?.();
      await consumer?.cancel();
    },
  };
}
