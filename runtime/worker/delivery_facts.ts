/**
 * What the worker runtime reads off a delivery and decides from it, as
 * small pure functions: its attempt, its deliveries so far, its task id, the
 * retry policy that applies, the time limit of an attempt, and the delay
 * queues' rounding.
 *
 * @module
 */

import type { Delivery } from "../../core/broker/broker.ts";
import {
  ATTEMPT_HEADER,
  boundText,
  DEADLINE_EXCEEDED,
  DELIVERY_COUNT_HEADER,
  type Message,
  SENT_AT_HEADER,
  TASK_TIMEOUT,
  type TaskRequest,
} from "../../core/contract/mod.ts";
import type { FunctionInfo, RetryPolicy } from "../define_function.ts";
import type { AttemptLimit } from "./runner.ts";

// Jitter takes one of this many evenly spaced steps, so a policy maps to a
// bounded set of delay queues.
export const JITTER_STEPS = 20;

/** A Celery task whose eta is this close runs at once. */
export const ETA_SLACK_MS = 50;

/** Largest attempt number read from a header; a higher one is treated as this. */
const MAX_ATTEMPT = 1000;

/** A delivery being handled. */
export interface Task {
  delivery: Delivery;
  /** Set once the message went back to the broker unfinished. */
  abandoned: boolean;
  done: Promise<void>;
}

/** The attempt a delivery is: 1, or what the runtime's retry header says. */
export function attemptOf(delivery: Delivery): number {
  const value = Number(delivery.properties.headers?.[ATTEMPT_HEADER]);
  return Number.isInteger(value) && value >= 1 ? Math.min(value, MAX_ATTEMPT) : 1;
}

/** How often the broker delivered it before, unsettled (a quorum queue's count). */
export function deliveriesOf(delivery: Delivery): number {
  const value = Number(delivery.properties.headers?.[DELIVERY_COUNT_HEADER]);
  return Number.isInteger(value) && value >= 0 ? value : 0;
}

/** The caller's task id: `message_id`, else `correlation_id`. */
export function taskIdOf(message: Message): string | null {
  const id = message.properties.messageId ?? message.properties.correlationId;
  return id === undefined ? null : boundText(id, 255);
}

/** When the request was sent (its `x-sent-at` header, else its AMQP timestamp), if known. */
export function sentAtOf(delivery: Delivery): number | undefined {
  const header = Number(delivery.properties.headers?.[SENT_AT_HEADER]);
  if (Number.isSafeInteger(header) && header > 0) return header;
  const seconds = delivery.properties.timestamp;
  return typeof seconds === "number" && seconds > 0 ? seconds * 1000 : undefined;
}

/** The function's retry policy with the request's overrides. */
export function policyFor(info: FunctionInfo, request: TaskRequest): RetryPolicy {
  const { retry } = request;
  return {
    ...info.retry,
    ...(retry.max_retries !== undefined && { maxRetries: retry.max_retries }),
    ...(retry.base_delay_ms !== undefined && { baseDelayMs: retry.base_delay_ms }),
    ...(retry.factor !== undefined && { factor: retry.factor }),
    ...(retry.max_delay_ms !== undefined && { maxDelayMs: retry.max_delay_ms }),
  };
}

/**
 * `ms` rounded to two significant digits (1234 to 1200). Each delay has a
 * retry queue of its own: rounding keeps the number of queues a function
 * can make small, whatever delays its requests ask for.
 */
export function twoDigits(ms: number): number {
  if (ms < 100) return Math.round(ms);
  const unit = 10 ** (Math.floor(Math.log10(ms)) - 1);
  return Math.round(ms / unit) * unit;
}

/** Bytes of `text` as UTF-8, counted only when its length alone cannot settle `max`. */
export function fitsIn(text: string, max: number): boolean {
  if (text.length * 3 <= max) return true;
  if (text.length > max) return false;
  return new TextEncoder().encode(text).byteLength <= max;
}

/** The time limit of an attempt: the function's timeout, or the caller's deadline if sooner. */
export function attemptLimit(timeoutMs: number, deadline: number | null): AttemptLimit {
  const untilDeadline = deadline === null ? Infinity : deadline - Date.now();
  if (untilDeadline < timeoutMs) {
    return {
      ms: Math.max(0, untilDeadline),
      type: DEADLINE_EXCEEDED,
      message: "Aborted the task at its deadline: the caller no longer waits for it",
    };
  }
  return {
    ms: timeoutMs,
    type: TASK_TIMEOUT,
    message:
      `Aborted the attempt after ${timeoutMs} ms, the function's timeoutMs: make the handler faster, or raise timeoutMs`,
  };
}
