/**
 * What a function author writes: a name, the queue it consumes and a
 * handler. The runtime turns it into a queue consumer.
 *
 * @module
 */

import type { BackoffPolicy } from "../core/backoff.ts";
import { CELERY_NAME_PATTERN } from "../core/contract/celery.ts";
import { NAME_PATTERN } from "../core/contract/names.ts";
import { type Payload, RETRY_LIMITS } from "../core/contract/request.ts";
import { DEFAULT_ALLOWED_SENDERS } from "../core/contract/users.ts";
import type { Logger } from "../core/log.ts";
import type { EventAttributes } from "../core/contract/cloud_events.ts";

export { DEFAULT_ALLOWED_SENDERS, NAME_PATTERN };

/** What a handler knows about the task it runs. */
export interface TaskContext {
  /** The caller's task id (`message_id`, else `correlation_id`), if any. */
  taskId: string | null;
  /** 1 for the first attempt, 2 for the first retry, and so on. */
  attempt: number;
  /** The worker running it, as reported in replies. */
  worker: string;
  /**
   * When the caller stops waiting (ms since the Unix epoch), or `null` when
   * it gave no deadline.
   */
  deadline: number | null;
  /**
   * For a run of the function's schedule (docs/schedules.md): the tick's
   * time, ISO 8601 in UTC (`2026-11-29T06:00:00.000Z`), the same in every
   * retry of it; `null` for a call.
   */
  tick: string | null;
  /**
   * Aborted when the attempt must end before the handler is done: at the
   * function's `timeoutMs`, at the caller's deadline, or when the worker
   * stops. Pass it on to whatever the handler waits for.
   */
  signal: AbortSignal;
  /** The worker's logger, with the task's id and attempt on every line. */
  log: Logger;
  /**
   * The CloudEvents attributes (`id`, `source`, `type`, `subject`, `time`,
   * `hops`...) of the event that triggered this run; absent for a call
   * (docs/events.md). The payload is the event's data.
   */
  event?: EventAttributes;
}

/** Turns a payload into a JSON-serialisable result, or throws. */
export type Handler = (payload: Payload, context: TaskContext) => unknown;

/** Retry settings of a function: how often and how far apart to retry a failure. */
export interface RetryPolicy extends BackoffPolicy {
  /** Retries after the first attempt; 0 never retries. */
  maxRetries: number;
}

/** The retry settings a function has unless it or the request says otherwise. */
export const DEFAULT_RETRY_POLICY: Readonly<RetryPolicy> = {
  maxRetries: 3,
  baseDelayMs: 500,
  factor: 2,
  maxDelayMs: 30_000,
  jitter: 0.2,
};

/** How long an attempt may run unless its function says otherwise: 5 minutes. */
export const DEFAULT_TIMEOUT_MS = 300_000;

/** The longest `timeoutMs` a function may declare: one day. */
export const MAX_TIMEOUT_MS = 86_400_000;

/** What the runtime needs to know of a function, without its handler. */
export interface FunctionInfo {
  /** The name requests carry in `task`, for example `task_a`. */
  readonly name: string;
  /** The durable queue this function consumes, for example `queue_a`. */
  readonly queue: string;
  /** Overrides of {@linkcode DEFAULT_RETRY_POLICY}. */
  readonly retry: Readonly<RetryPolicy>;
  /** An attempt still running after this long is aborted and fails with `TaskTimeout`. */
  readonly timeoutMs: number;
  /** Broker users (`user_id`) whose requests it runs, besides its own worker's. */
  readonly allowedSenders: readonly string[];
  /** Celery task names it answers to (`tasks.task_a`), for Celery clients. */
  readonly celeryNames: readonly string[];
}

/** A function: its handler, its name and the one queue it consumes. */
export interface FunctionDefinition extends FunctionInfo {
  readonly handler: Handler;
}

/** Options for {@linkcode defineFunction}. */
export interface DefineFunctionOptions {
  name: string;
  queue: string;
  handler: Handler;
  retry?: Partial<RetryPolicy>;
  /**
   * How long an attempt may run, in milliseconds, at most a day.
   * @default {DEFAULT_TIMEOUT_MS}
   */
  timeoutMs?: number;
  /**
   * Broker users whose requests it runs, besides its own worker's user.
   * @default {DEFAULT_ALLOWED_SENDERS}
   */
  allowedSenders?: string[];
  /**
   * Celery task names it answers to, so that Celery clients can call it as
   * they called the Celery task it replaces (docs/celery.md).
   * @default {[]}
   */
  celeryNames?: string[];
}

/** Declares a function; checks its name and queue so mistakes fail at start. */
export function defineFunction(options: DefineFunctionOptions): FunctionDefinition {
  if (typeof options?.handler !== "function") {
    throw new TypeError(
      `Cannot define function '${options?.name}' as its handler is not a function`,
    );
  }
  const info = checkFunctionInfo({
    name: options.name,
    queue: options.queue,
    retry: {
      ...DEFAULT_RETRY_POLICY,
      // An override given as undefined keeps the default rather than erasing it.
      ...Object.fromEntries(
        Object.entries(options.retry ?? {}).filter(([, value]) => value !== undefined),
      ),
    },
    timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    allowedSenders: options.allowedSenders ?? [...DEFAULT_ALLOWED_SENDERS],
    celeryNames: options.celeryNames ?? [],
  });
  return Object.freeze({ ...info, handler: options.handler });
}

/**
 * Checks what a function says of itself and returns a frozen copy; throws a
 * `TypeError` or `RangeError` naming the setting. The runtime runs it again
 * on what a function's sandbox reports, which it does not trust.
 */
export function checkFunctionInfo(info: FunctionInfo): FunctionInfo {
  const raw = info as unknown as Record<string, unknown>;
  for (const key of ["name", "queue"] as const) {
    if (typeof raw[key] !== "string" || !NAME_PATTERN.test(raw[key] as string)) {
      throw new TypeError(
        `Cannot define function as its ${key} '${
          String(raw[key]).slice(0, 80)
        }' is not lower_snake_case: use letters, digits and _ (at most 63)`,
      );
    }
  }
  const retry = { ...info.retry };
  checkRetryPolicy(info.name, retry);
  const timeoutMs = info.timeoutMs;
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > MAX_TIMEOUT_MS) {
    throw new RangeError(
      `Cannot define function '${info.name}' as timeoutMs is ${timeoutMs}: use a whole number of milliseconds from 1 to ${MAX_TIMEOUT_MS}`,
    );
  }
  const senders = info.allowedSenders;
  if (
    !Array.isArray(senders) || senders.length > 100 ||
    !senders.every((user) => typeof user === "string" && /^[\w.@-]{1,64}$|^\*$/.test(user))
  ) {
    throw new TypeError(
      `Cannot define function '${info.name}' as allowedSenders is not a list of broker user names: use for example ["dispatcher", "task_a"]`,
    );
  }
  const celeryNames = info.celeryNames ?? [];
  if (
    !Array.isArray(celeryNames) || celeryNames.length > 100 ||
    !celeryNames.every((name) => typeof name === "string" && CELERY_NAME_PATTERN.test(name))
  ) {
    throw new TypeError(
      `Cannot define function '${info.name}' as celeryNames is not a list of Celery task names: use for example ["tasks.${info.name}"]`,
    );
  }
  return Object.freeze({
    name: info.name,
    queue: info.queue,
    retry: Object.freeze(retry),
    timeoutMs,
    allowedSenders: Object.freeze([...senders]),
    celeryNames: Object.freeze([...celeryNames]),
  });
}

function checkRetryPolicy(name: string, retry: RetryPolicy): void {
  const limits: [keyof RetryPolicy, number, number][] = [
    ["maxRetries", 0, RETRY_LIMITS.max_retries],
    ["baseDelayMs", 0, RETRY_LIMITS.base_delay_ms],
    ["factor", 1, RETRY_LIMITS.factor],
    ["maxDelayMs", 0, RETRY_LIMITS.max_delay_ms],
    ["jitter", 0, 1],
  ];
  for (const [key, min, max] of limits) {
    const value = retry[key];
    if (typeof value !== "number" || !Number.isFinite(value) || value < min || value > max) {
      throw new RangeError(
        `Cannot define function '${name}' as retry.${key} is ${value}: use a number from ${min} to ${max}`,
      );
    }
  }
  if (!Number.isInteger(retry.maxRetries)) {
    throw new RangeError(
      `Cannot define function '${name}' as retry.maxRetries is ${retry.maxRetries}: use a whole number`,
    );
  }
}

/**
 * Thrown by a handler for a failure that another attempt cannot fix (bad
 * input, say): the task fails at once instead of being retried.
 */
export class NonRetryableError extends Error {
  /**
   * @param message What was wrong and how to fix it.
   * @param options The underlying error, if any.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "NonRetryableError";
  }
}

/** Thrown by a handler whose payload is unusable; never retried. */
export class InvalidPayloadError extends NonRetryableError {
  /** @param message Which field was wrong, its value and what to send instead. */
  constructor(message: string) {
    super(message);
    this.name = "InvalidPayload";
  }
}
