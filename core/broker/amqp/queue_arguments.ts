/**
 * The arguments RabbitMQ takes for a queue, from the {@linkcode QueueOptions}
 * of the Broker interface: shared by the AMQP adapter and the Kubernetes
 * manifests, which declare the same queues.
 *
 * @module
 */

import type { QueueOptions } from "../broker.ts";

/** The arguments RabbitMQ takes for a queue declared with `options`. */
export function queueArguments(options: QueueOptions): Record<string, unknown> {
  const args: Record<string, unknown> = {};
  if (options.messageTtlMs !== undefined) args["x-message-ttl"] = options.messageTtlMs;
  if (options.deadLetterQueue !== undefined) {
    args["x-dead-letter-exchange"] = "";
    args["x-dead-letter-routing-key"] = options.deadLetterQueue;
  }
  if (options.expiresMs !== undefined) args["x-expires"] = options.expiresMs;
  if (options.singleActiveConsumer) args["x-single-active-consumer"] = true;
  if (options.maxLength !== undefined) {
    args["x-max-length"] = options.maxLength;
    args["x-overflow"] = "reject-publish";
  }
  if (options.type === "stream") {
    args["x-queue-type"] = "stream";
    if (options.maxAgeMs !== undefined) {
      args["x-max-age"] = `${Math.ceil(options.maxAgeMs / 1000)}s`;
    }
    if (options.maxBytes !== undefined) args["x-max-length-bytes"] = options.maxBytes;
    if (options.segmentBytes !== undefined) {
      args["x-stream-max-segment-size-bytes"] = options.segmentBytes;
    }
  }
  if (options.type === "quorum") {
    args["x-queue-type"] = "quorum";
    // RabbitMQ counts redeliveries: a limit of N - 1 lets N deliveries through.
    if (options.deliveryLimit !== undefined) args["x-delivery-limit"] = options.deliveryLimit - 1;
    if (options.deadLetterQueue !== undefined) {
      // Dead-lettered only once the target queue confirmed it, never lost on
      // the way (RabbitMQ requires reject-publish overflow for it).
      args["x-dead-letter-strategy"] = "at-least-once";
      args["x-overflow"] = "reject-publish";
    }
  }
  return args;
}
