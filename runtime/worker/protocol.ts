/**
 * What a delivery asks, in the native contract or as a Celery protocol 2
 * message, read into one request the runtime runs the same way. Celery's
 * own fields map onto the native ones: `expires` is the deadline,
 * `timelimit` caps the attempt, `retries` counts attempts, `eta` delays.
 *
 * @module
 */

import type { Delivery } from "../../core/broker/broker.ts";
import {
  ATTEMPT_HEADER,
  checkEnvelope,
  parseCeleryRequest,
  parseRequest,
  type TaskError,
  type TaskRequest,
} from "../../core/contract/mod.ts";
import type { FunctionInfo } from "../define_function.ts";

/** A request read off a delivery. */
export interface ReadRequest {
  ok: true;
  request: TaskRequest;
  /** The attempt, when the request says it (Celery's `retries`). */
  attempt?: number;
  /** Not before this time (ms since the epoch): Celery's `eta`. */
  eta?: number;
  /** The attempt's time limit. */
  timeoutMs: number;
  /** For a Celery request: the id its reply carries, and whether it wants one. */
  celery?: { id: string; ignoreResult: boolean };
}

/** A delivery that breaks the contract; `task` when it named a function. */
export interface UnreadRequest {
  ok: false;
  error: TaskError;
  task?: string;
}

/** The longest wait a Celery eta may ask for unless a worker says otherwise (`MAX_ETA_MS`): 7 days. */
export const DEFAULT_MAX_ETA_MS = 7 * 24 * 3_600_000;

/** Options for {@linkcode readRequest}. */
export interface ReadRequestOptions {
  /** Largest body accepted, in bytes. */
  maxBytes: number;
  /**
   * The longest wait a Celery eta may ask for, from now; a later eta is
   * refused, so that no request waits in the broker for good.
   * @default {DEFAULT_MAX_ETA_MS}
   */
  maxEtaMs?: number;
  /** The time an eta is measured from. @default {Date.now()} */
  now?: number;
}

/** Reads the request of `delivery` for the function `info`. */
export function readRequest(
  delivery: Delivery,
  celery: boolean,
  info: FunctionInfo,
  options: ReadRequestOptions,
): ReadRequest | UnreadRequest {
  const { maxBytes } = options;
  if (!celery) {
    const parsed = parseRequest(delivery, { task: info.name, maxBytes });
    if (!parsed.ok) return { ok: false, error: parsed.error, task: parsed.task };
    return { ok: true, request: parsed.value, timeoutMs: info.timeoutMs };
  }
  const envelope = checkEnvelope(delivery, { maxBytes, contentType: false });
  const parsed = envelope.ok
    ? parseCeleryRequest(delivery, { names: info.celeryNames, maxBytes })
    : envelope;
  if (!parsed.ok) return { ok: false, error: parsed.error };
  const call = parsed.value;
  const maxEtaMs = options.maxEtaMs ?? DEFAULT_MAX_ETA_MS;
  const waitMs = call.eta === undefined ? 0 : call.eta - (options.now ?? Date.now());
  if (waitMs > maxEtaMs) {
    return {
      ok: false,
      error: {
        type: "InvalidRequest",
        message: `Cannot wait for the Celery eta ${
          new Date(call.eta!).toISOString()
        } as it is ${waitMs} ms away: this worker waits at most ${maxEtaMs} ms (MAX_ETA_MS); send the task nearer its time`,
      },
    };
  }
  return {
    ok: true,
    request: {
      task: info.name,
      payload: call.payload,
      progress: false,
      retry: {},
      ...(call.expires !== undefined && { deadline: call.expires }),
    },
    // A retry of ours carries its attempt in a header; Celery's count is
    // for a first delivery.
    ...(delivery.properties.headers?.[ATTEMPT_HEADER] === undefined &&
      { attempt: call.retries + 1 }),
    ...(call.eta !== undefined && { eta: call.eta }),
    timeoutMs: call.timeLimitMs === undefined
      ? info.timeoutMs
      : Math.min(info.timeoutMs, call.timeLimitMs),
    celery: { id: call.id, ignoreResult: call.ignoreResult },
  };
}
