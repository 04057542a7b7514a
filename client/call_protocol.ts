/**
 * How a call speaks to a function's workers: what request it publishes for
 * an attempt, and how it reads each answer on the reply queue. Deno
 * functions speak the native contract ({@linkcode NATIVE_PROTOCOL}); a
 * function served by Celery workers speaks Celery's (`celery_call.ts`).
 * Either way an answer is the call's final {@linkcode TaskReply}, a
 * progress event, or something that does not count.
 *
 * @module
 */

import {
  encodeRequest,
  type Message,
  parseProgress,
  parseReply,
  type Payload,
  PROGRESS_MESSAGE_TYPE,
  type RetryOverrides,
  type TaskProgress,
  type TaskReply,
} from "../core/contract/mod.ts";

/** What one attempt's request is made of. */
export interface CallRequest {
  /** The function's name, such as `task_a`. */
  task: string;
  payload: Payload | undefined;
  /** Identifies the task; the correlation id of its answers. */
  taskId: string;
  replyTo: string;
  /** When the caller stops waiting, in ms since the epoch. */
  deadline: number;
  /** `Date.now()` when it is sent. */
  now: number;
  /** Whether the caller wants progress events. */
  progress: boolean;
  retry?: RetryOverrides;
  /** W3C trace context headers, when the call is traced. */
  headers?: Record<string, string>;
  /** Stamp `x-sent-at`, for a traced worker's queue-wait span. */
  stampSentAt?: boolean;
}

/** One answer on the reply queue, read. */
export type CallAnswer =
  | { kind: "reply"; reply: TaskReply }
  /** An answer that is not the end: a progress event when there is one to tell. */
  | { kind: "progress"; progress?: TaskProgress }
  | { kind: "invalid" };

/** Builds a call's request and reads its answers. */
export interface CallProtocol {
  encode(request: CallRequest): Message;
  /** Reads one answer that carries the call's correlation id, from an expected sender. */
  read(message: Message): CallAnswer;
}

/** The native contract: a request the worker retries itself, one final reply. */
export const NATIVE_PROTOCOL: CallProtocol = Object.freeze({
  encode(request: CallRequest): Message {
    return encodeRequest(request.task, request.payload, {
      taskId: request.taskId,
      replyTo: request.replyTo,
      progress: request.progress,
      retry: request.retry,
      deadline: request.deadline,
      headers: request.headers,
      stampSentAt: request.stampSentAt,
      now: request.now,
    });
  },
  read(message: Message): CallAnswer {
    if (message.properties.type === PROGRESS_MESSAGE_TYPE) {
      const progress = parseProgress(message.body);
      return progress.ok ? { kind: "progress", progress: progress.value } : { kind: "invalid" };
    }
    const reply = parseReply(message.body);
    return reply.ok ? { kind: "reply", reply: reply.value } : { kind: "invalid" };
  },
});
