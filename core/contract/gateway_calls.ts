/**
 * The gateway replicas' shared record of asynchronous calls and
 * Idempotency-Keys (docs/gateway.md, "What holds across replicas"): a
 * RabbitMQ stream every replica appends to and reads from the start of
 * its window, and the one durable reply queue the replicas share for the
 * replies of asynchronous calls, as competing consumers. The records
 * themselves are the gateway's (`gateway/call_ledger.ts`); the broker's
 * definitions need only the names and how the stream is declared.
 *
 * @module
 */

/** The stream of the gateway's records. */
export const GATEWAY_CALLS_STREAM = "gateway.calls";

/**
 * The caller name of the replicas' shared reply queue: with the broker
 * user `gateway`, `replies.named.gateway.calls`.
 */
export const GATEWAY_CALLS_NAME = "calls";

/** How long a call is kept after it ended, and a settled Idempotency-Key: the record's window. */
export const GATEWAY_CALLS_WINDOW_MS = 60 * 60_000;

/** Most bytes the stream keeps; the oldest segments go first. */
export const GATEWAY_CALLS_MAX_BYTES = 256 * 1024 * 1024;

/** The size of the stream's segments: retention drops whole segments, so they are small. */
export const GATEWAY_CALLS_SEGMENT_BYTES = 4 * 1024 * 1024;

/** AMQP `type` of a replica's marker on the stream, which it reads back to know it caught up. */
export const GATEWAY_SYNC_MESSAGE_TYPE = "gateway.sync";

/** AMQP `type` of a record on the stream. */
export const GATEWAY_RECORD_MESSAGE_TYPE = "gateway.record";

/** How the stream is declared, by the broker's definitions or a gateway that may. */
export const GATEWAY_CALLS_STREAM_OPTIONS = Object.freeze({
  durable: true,
  type: "stream" as const,
  maxAgeMs: GATEWAY_CALLS_WINDOW_MS,
  maxBytes: GATEWAY_CALLS_MAX_BYTES,
  segmentBytes: GATEWAY_CALLS_SEGMENT_BYTES,
});

/** The RabbitMQ arguments of {@linkcode GATEWAY_CALLS_STREAM_OPTIONS}, for the definitions. */
export const GATEWAY_CALLS_STREAM_ARGUMENTS: Readonly<Record<string, string | number>> = Object
  .freeze({
    "x-queue-type": "stream",
    "x-max-age": `${GATEWAY_CALLS_WINDOW_MS / 1000}s`,
    "x-max-length-bytes": GATEWAY_CALLS_MAX_BYTES,
    "x-stream-max-segment-size-bytes": GATEWAY_CALLS_SEGMENT_BYTES,
  });
