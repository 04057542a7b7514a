/**
 * What a caller hands `RpcClient` (`rpc_client.ts`) and gets back from it: the
 * options of a client, a call and a broadcast, how a call ends, where
 * replies come back, and the counts of replies it ignored.
 *
 * @module
 */

import type { Message, RetryOverrides, TaskProgress, TaskReply } from "../core/contract/mod.ts";
import type { TraceIds } from "../core/trace_context.ts";
import type { CallProtocol } from "./call_protocol.ts";
import type { SentEvent } from "./sent_events.ts";

/** Options for `RpcClient.open`. */
export interface RpcClientOptions {
  /** @default {"direct"} */
  replies?: ReplyMode;
  /**
   * Called with every message that arrives on the reply queue, before any
   * check or de-duplication: a tap for tests that count what the wire
   * carried (every reply per correlation id, duplicates included).
   */
  onWire?: (message: Message) => void;
  /**
   * Publishes a `task-sent` event as each request is handed to the broker
   * (see `sent_events.ts`); none when absent.
   */
  onSentEvent?: (event: SentEvent) => void;
}

/** Options for `RpcClient.call`. */
export interface CallOptions {
  /**
   * Stop waiting for the reply after this long. The request carries the
   * same deadline (`deadline` and the AMQP `expiration`), so that the broker
   * drops it, and no worker starts it, once nobody waits.
   */
  timeoutMs: number;
  /** Identifies the task; a new UUID when absent. */
  taskId?: string;
  retry?: RetryOverrides;
  /**
   * The broker user whose replies count: the one the function's workers run
   * as. Replies from this client's own user count too.
   * @default {the function's name, as each function's user is named in compose.yaml}
   */
  sender?: string;
  /** Receives the worker's progress events; asking for them sets `progress`. */
  onProgress?: (progress: TaskProgress) => void;
  /**
   * Called once the broker has the request: at its publisher confirm, or at
   * the first answer from the worker if that comes first (a persistent
   * request may be confirmed only once it is on disk, after the worker
   * answered). Always before the call's progress events and its end, so
   * that callers see sent, started, done in that order. It gets the call's
   * trace and span ids when tracing is on (for log lines), else `{}`.
   */
  onSent?: (trace: TraceIds) => void;
  /**
   * How the request is built and its answers read.
   * @default {NATIVE_PROTOCOL}
   */
  protocol?: CallProtocol;
}

/** How a call ended: with the one reply, or with no reply in time. */
export type CallOutcome =
  & {
    taskId: string;
    /** `performance.now()` when the request was handed to the broker. */
    sentAt: number;
    /** `performance.now()` when the call ended. */
    endedAt: number;
    /** `Date.now()` when the request was handed to the broker: comparable with worker times. */
    sentWallMs: number;
    /** `Date.now()` when the call ended. */
    endedWallMs: number;
    /** The call's trace and span ids, when tracing is on (`OTEL_DENO=true`). */
    trace?: TraceIds;
  }
  & ({ kind: "reply"; reply: TaskReply } | { kind: "timeout" });

/** Options for `RpcClient.broadcast`. */
export interface BroadcastOptions {
  /** Stop collecting answers after this long. */
  timeoutMs: number;
  /** Stop early once this returns true for the answers so far. */
  enough?: (answers: Message[]) => boolean;
}

/** Counts of messages received that no call took. */
export interface IgnoredReplies {
  /** Correlation id of no call of this client, or of one that already ended. */
  unknown: number;
  /** Not a reply of the contract. */
  invalid: number;
  /** From a broker user that is neither the function's workers' nor this client's. */
  unexpectedSender: number;
}

/**
 * Where replies come back:
 *
 * - `direct`: RabbitMQ's Direct Reply-to, no queue at all. Replies are
 *   lost when the connection is, so a call in flight when the client's node
 *   dies never gets its reply.
 * - `queue`: a quorum queue of this client's (`replies.<32 hex>`), declared
 *   at open and deleted at close (or by the broker after
 *   {@linkcode REPLY_QUEUE_IDLE_MS} without a consumer). It is replicated
 *   on the cluster's nodes, so replies wait there while the client
 *   reconnects to another node. Each reply costs a replicated write.
 */
export type ReplyMode = "direct" | "queue";

/** A reply queue with no consumer for this long (a client that died) is deleted by the broker. */
export const REPLY_QUEUE_IDLE_MS = 10 * 60_000;
