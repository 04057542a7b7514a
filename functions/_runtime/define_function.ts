/**
 * What a function author writes: a name, the queue it consumes and a
 * handler. The runtime turns it into a queue consumer.
 *
 * @module
 */

import type { BackoffPolicy } from "./backoff.ts";
import type { Payload } from "./contract.ts";
import type { Logger } from "./log.ts";

/** What a handler knows about the task it runs. */
export interface TaskContext {
  /** The caller's task id (`message_id`, else `correlation_id`), if any. */
  taskId: string | null;
  /** 1 for the first attempt, 2 for the first retry, and so on. */
  attempt: number;
  /** The worker running it, as reported in replies. */
  worker: string;
  /** Aborted when the worker must stop before the handler is done. */
  signal: AbortSignal;
  /** The worker's logger, with the task's id and attempt on every line. */
  log: Logger;
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

/** A function: its handler, its name and the one queue it consumes. */
export interface FunctionDefinition {
  /** The name requests carry in `task`, for example `task_a`. */
  readonly name: string;
  /** The durable queue this function consumes, for example `queue_a`. */
  readonly queue: string;
  readonly handler: Handler;
  /** Overrides of {@linkcode DEFAULT_RETRY_POLICY}. */
  readonly retry: Readonly<RetryPolicy>;
}

/** Options for {@linkcode defineFunction}. */
export interface DefineFunctionOptions {
  name: string;
  queue: string;
  handler: Handler;
  retry?: Partial<RetryPolicy>;
}

/** Names of functions and queues: safe in URLs, file names and broker permissions. */
export const NAME_PATTERN = /^[a-z][a-z0-9_]{0,62}$/;

/** Declares a function; checks its name and queue so mistakes fail at start. */
export function defineFunction(options: DefineFunctionOptions): FunctionDefinition {
  for (const key of ["name", "queue"] as const) {
    if (typeof options[key] !== "string" || !NAME_PATTERN.test(options[key])) {
      throw new TypeError(
        `Cannot define function as its ${key} '${
          options[key]
        }' is not lower_snake_case: use letters, digits and _ (at most 63)`,
      );
    }
  }
  if (typeof options.handler !== "function") {
    throw new TypeError(
      `Cannot define function '${options.name}' as its handler is not a function`,
    );
  }
  const retry: RetryPolicy = {
    ...DEFAULT_RETRY_POLICY,
    // An override given as undefined keeps the default rather than erasing it.
    ...Object.fromEntries(
      Object.entries(options.retry ?? {}).filter(([, value]) => value !== undefined),
    ),
  };
  checkRetryPolicy(options.name, retry);
  return Object.freeze({
    name: options.name,
    queue: options.queue,
    handler: options.handler,
    retry: Object.freeze(retry),
  });
}

function checkRetryPolicy(name: string, retry: RetryPolicy): void {
  const limits: [keyof RetryPolicy, number, number][] = [
    ["maxRetries", 0, Number.MAX_SAFE_INTEGER],
    ["baseDelayMs", 0, Number.MAX_SAFE_INTEGER],
    ["factor", 1, 1000],
    ["maxDelayMs", 0, Number.MAX_SAFE_INTEGER],
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
