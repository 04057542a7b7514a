/**
 * One call on the wire: what it is given ({@linkcode TaskCallOptions}, the
 * only options type of the call path, from `call()` to the request), how
 * it speaks to a function's workers, whom it believes, and how it ends
 * ({@linkcode CallOutcome}). A protocol builds an attempt's request from what the wire contract takes
 * (`EncodeRequestOptions`) and reads each answer that carries the call's
 * correlation id: Deno functions speak the native contract
 * ({@linkcode NATIVE_PROTOCOL}), functions served by Celery workers
 * Celery's (`celery.ts`). Either way an answer is the call's final
 * {@linkcode TaskReply}, a progress event, or something that does not count.
 *
 * An answer counts only from an expected sender: RabbitMQ checks the
 * `user_id` of every message against the user of the connection that
 * published it, so a reply or a pong names its sender truthfully. A caller
 * accepts one only from the broker user of the function's workers, or from
 * its own user (deployments where every party shares one user, like a bare
 * RabbitMQ's `guest`). Anything else, such as a reply forged by another
 * function's worker that learned a correlation id, is counted and ignored.
 *
 * @module
 */

import {
  encodeRequest,
  type EncodeRequestOptions,
  type Message,
  parseProgress,
  parseReply,
  type Payload,
  PROGRESS_MESSAGE_TYPE,
  type RetryOverrides,
  type TaskProgress,
  type TaskReply,
} from "../core/contract/mod.ts";
import type { TraceIds } from "../core/trace_context.ts";
import { GUEST_USER } from "../core/contract/users.ts";

/** Options of one call: the only options type of the call path, from `call()` to the wire. */
export interface TaskCallOptions {
  /**
   * Stop waiting after this long; the request carries the same deadline
   * (`deadline` and the AMQP `expiration`), so that the broker drops it,
   * and no worker starts it, once nobody waits.
   * @default {the client's timeoutMs}
   */
  timeoutMs?: number;
  /** Identifies the task in replies, logs and dead letters; a new UUID when absent. */
  taskId?: string;
  /**
   * Per-call retry settings, each overriding the function's own. For a
   * function served by Celery workers the client makes these retries itself
   * (default: none; see `celery.ts`).
   */
  retry?: RetryOverrides;
  /**
   * Receives the worker's progress events: `started` at each attempt, and
   * `retry` after a failed one. Asking for them doubles the messages back.
   */
  onProgress?: (progress: TaskProgress) => void;
  /**
   * Called once the broker has the request: at its publisher confirm, or at
   * the first answer from the worker if that comes first (a persistent
   * request may be confirmed only once it is on disk, after the worker
   * answered). Always before the call's progress events and its end, so
   * that callers see sent, started, done in that order. It gets the call's
   * trace and span ids when tracing is on (`OTEL_DENO=true`), else `{}`.
   */
  onSent?: (trace: TraceIds) => void;
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

/** One answer on the reply queue, read. */
export type CallAnswer =
  | { kind: "reply"; reply: TaskReply }
  /** An answer that is not the end: a progress event when there is one to tell. */
  | { kind: "progress"; progress?: TaskProgress }
  | { kind: "invalid" };

/** Builds a call's request and reads its answers. */
export interface CallProtocol {
  /** The message that asks `task` to run once, with the wire contract's options. */
  encode(task: string, payload: Payload | undefined, request: EncodeRequestOptions): Message;
  /** Reads one answer that carries the call's correlation id, from an expected sender. */
  read(message: Message): CallAnswer;
}

/** The native contract: a request the worker retries itself, one final reply. */
export const NATIVE_PROTOCOL: CallProtocol = Object.freeze({
  encode: encodeRequest,
  read(message: Message): CallAnswer {
    if (message.properties.type === PROGRESS_MESSAGE_TYPE) {
      const progress = parseProgress(message.body);
      return progress.ok ? { kind: "progress", progress: progress.value } : { kind: "invalid" };
    }
    const reply = parseReply(message.body);
    return reply.ok ? { kind: "reply", reply: reply.value } : { kind: "invalid" };
  },
});

/**
 * Whether a reply or pong that carries `userId` may come from the workers of
 * a function whose broker user is `expected`, as received on a connection
 * of `ownUser`. Without `user_id` only a `guest` connection accepts it: such
 * brokers have no users to tell apart.
 */
export function isExpectedSender(
  userId: string | undefined,
  expected: string,
  ownUser: string,
): boolean {
  if (userId === undefined) return ownUser === GUEST_USER;
  return userId === expected || userId === ownUser;
}

/** The warning for `count` answers (replies or pongs) that did not count, naming the fix. */
export function unexpectedSenders(count: number, what: "reply" | "pong", ownUser: string): string {
  const noun = count === 1 ? what : what === "reply" ? "replies" : "pongs";
  return `Ignored ${count} ${noun} from unexpected senders: a function's answers count only from its workers' broker user (its 'user' in functions/registry.yaml, a configuration's functions: or the client's functions option, default its name) or ${ownUser}. If those are your workers, set 'user' to the broker user they run as`;
}
