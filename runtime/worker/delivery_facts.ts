/**
 * What the worker runtime reads off a delivery and decides from it, as
 * small pure functions: its attempt, its deliveries so far, its task id, the
 * retry policy that applies, the wait before a retry, and the time limit of
 * an attempt.
 *
 * @module
 */

import { backoffDelay } from "../../core/backoff.ts";
import type { Delivery } from "../../core/broker/broker.ts";
import {
  ATTEMPT_HEADER,
  boundText,
  DEADLINE_EXCEEDED,
  DELIVERY_COUNT_HEADER,
  type Message,
  nearestRetryDelay,
  PRIOR_DELIVERIES_HEADER,
  RETRY_DELAYS_MS,
  retryDelayAtMost,
  SENT_AT_HEADER,
  TASK_TIMEOUT,
  type TaskRequest,
} from "../../core/contract/mod.ts";
import type { AttemptLimit } from "../attempt.ts";
import type { FunctionInfo, RetryPolicy } from "../define_function.ts";

/**
 * Jitter takes one of this many steps and one (21 with both ends), evenly
 * spaced over ±jitter: a wait is reproducible from its step.
 */
export const JITTER_STEPS = 20;

/** A request whose eta is this close runs at once. */
export const ETA_SLACK_MS = 50;

/** Largest attempt number read from a header; a higher one is treated as this. */
const MAX_ATTEMPT = 1000;

/** The attempt a delivery is: 1, or what the runtime's retry header says. */
export function attemptOf(delivery: Delivery): number {
  const value = Number(delivery.properties.headers?.[ATTEMPT_HEADER]);
  return Number.isInteger(value) && value >= 1 ? Math.min(value, MAX_ATTEMPT) : 1;
}

/** A count read from a header: a whole number from 0, else 0. */
function countOf(value: unknown): number {
  const number = Number(value);
  return Number.isSafeInteger(number) && number >= 0 ? number : 0;
}

/**
 * How often the broker delivered it before without it being settled (a
 * quorum queue's `x-delivery-count`), plus the failed deliveries of the
 * deliveries it is a copy of, when this worker's user handed it back
 * (`x-prior-deliveries`; from anyone else it is ignored).
 */
export function deliveriesOf(delivery: Delivery, workerUser?: string): number {
  const headers = delivery.properties.headers;
  const prior = workerUser !== undefined && delivery.properties.userId === workerUser
    ? countOf(headers?.[PRIOR_DELIVERIES_HEADER])
    : 0;
  return countOf(headers?.[DELIVERY_COUNT_HEADER]) + prior;
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
 * The backoff's wait before retry `retry` with its jitter, before rounding:
 * `random()` picks one of the 21 steps from `nominal × (1 - jitter)` to
 * `nominal × (1 + jitter)`.
 */
export function jitteredDelay(
  retry: number,
  policy: RetryPolicy,
  random: () => number = Math.random,
): number {
  const step = Math.min(Math.floor(random() * (JITTER_STEPS + 1)), JITTER_STEPS);
  return backoffDelay(retry, policy, () => step / JITTER_STEPS);
}

/**
 * The wait before retry `retry`: its jittered backoff rounded to the nearest
 * delay a retry queue of the function has (`delays`, the ladder
 * {@linkcode RETRY_DELAYS_MS} less any the worker could not declare).
 */
export function retryDelay(
  retry: number,
  policy: RetryPolicy,
  random: () => number = Math.random,
  delays: readonly number[] = RETRY_DELAYS_MS,
): number {
  return nearestRetryDelay(jitteredDelay(retry, policy, random), delays);
}

/**
 * The next hop of a wait that must not end early (an eta): the longest
 * delay of `delays` that is at most `waitMs`, else the shortest one above
 * nothing, so that a wait never spins through a queue without delay.
 */
export function etaHop(waitMs: number, delays: readonly number[] = RETRY_DELAYS_MS): number {
  const hop = retryDelayAtMost(waitMs, delays);
  if (hop > 0) return hop;
  return Math.min(...delays.filter((delay) => delay > 0));
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
