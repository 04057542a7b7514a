/**
 * Calling a function served by Celery workers (`protocol: celery`): each
 * attempt is a Celery protocol 2 request for the function's Celery task
 * name, answered by `rpc://` results on the caller's Direct Reply-to queue
 * (the contract's `encodeCeleryRequest` and `parseCeleryReply`). The
 * results become the same {@linkcode TaskReply} a Deno function sends, so
 * callers, reports and expectations treat both alike.
 *
 * Retries: a Celery worker knows nothing of the per-call retry settings of
 * the native contract, so the caller makes them. After a retryable
 * `FAILURE` it waits its backoff and sends the task again, with the same id
 * and `retries` counting the attempts so far (as a Celery retry does), as
 * often as the call's `max_retries` says (default 0: a Celery task's own
 * retry policy is its function's default). Retries a Celery task makes
 * itself (`self.retry()`, `autoretry_for`) arrive as `RETRY` results: they
 * count as attempts, and the call goes on waiting.
 *
 * @module
 */

import { backoffDelay } from "../core/backoff.ts";
import {
  CELERY_READY_STATES,
  type CeleryResult,
  encodeCeleryRequest,
  type EncodeRequestOptions,
  type Message,
  parseCeleryReply,
  type Payload,
  type TaskError,
  type TaskProgress,
  type TaskReply,
} from "../core/contract/mod.ts";
import type { FunctionRoute } from "../core/registry.ts";
import type { CallAnswer, CallOutcome, CallProtocol, TaskCallOptions } from "./protocol.ts";

/** The backoff of the caller's retries of a Celery function, unless the call says otherwise. */
const CELERY_RETRY_DEFAULTS = Object.freeze({
  maxRetries: 0,
  baseDelayMs: 500,
  factor: 2,
  maxDelayMs: 30_000,
  jitter: 0.2,
});

/**
 * Failures no new attempt can mend: the request itself is wrong, or the
 * worker refuses its sender. Any other `FAILURE` is retried.
 */
const NON_RETRYABLE_CELERY_ERRORS: ReadonlySet<string> = new Set([
  "ContentDisallowed",
  "DecodeError",
  "EncodeError",
  "InvalidRequest",
  "InvalidTaskError",
  "NotRegistered",
  "NotSupported",
  "Reject",
  "TaskRevokedError",
  "Unauthenticated",
]);

/** What the caller knows of one attempt's Celery worker. */
interface Attempt {
  /** The attempt's number: earlier sends and Celery's own retries, plus one. */
  number: number;
  /** `RETRY` results seen during it. */
  retries: number;
  /** The Celery worker's name, from its `STARTED` result (`task_track_started`). */
  worker?: string;
  /** `Date.now()` at `STARTED`, else when the request was sent. */
  startedWallMs: number;
}

/** The worker's name a `STARTED` result carries (`{pid, hostname}`). */
function hostnameOf(result: CeleryResult): string | undefined {
  const value = result.result;
  if (typeof value !== "object" || value === null) return undefined;
  const hostname = (value as { hostname?: unknown }).hostname;
  return typeof hostname === "string" && hostname !== "" ? hostname.slice(0, 255) : undefined;
}

/**
 * The protocol of one attempt at a Celery function: a Celery request for
 * `celeryName`, and its results read as the native contract's reply and
 * progress events.
 */
function celeryProtocol(
  fn: string,
  route: FunctionRoute & { celeryName: string },
  attemptNumber: number,
): CallProtocol {
  const attempt: Attempt = { number: attemptNumber, retries: 0, startedWallMs: Date.now() };
  const progress = (taskId: string, event: TaskProgress["event"], error?: TaskError) => ({
    task_id: taskId,
    task: fn,
    event,
    worker: attempt.worker ?? `celery worker of ${route.queue}`,
    queue: route.queue,
    attempt: attempt.number + attempt.retries,
    at: new Date().toISOString(),
    ...(error && { error }),
  });
  return {
    encode(_task: string, payload: Payload | undefined, request: EncodeRequestOptions): Message {
      attempt.startedWallMs = request.now ?? Date.now();
      return encodeCeleryRequest(route.celeryName, payload, {
        taskId: request.taskId,
        replyTo: request.replyTo,
        retries: attemptNumber - 1,
        expires: request.deadline,
        now: request.now,
      });
    },
    read(message: Message): CallAnswer {
      const parsed = parseCeleryReply(message.body);
      if (!parsed.ok) return { kind: "invalid" };
      const result = parsed.value;
      if (result.status === "STARTED") {
        attempt.worker = hostnameOf(result) ?? attempt.worker;
        attempt.startedWallMs = Date.now();
        return { kind: "progress", progress: progress(result.taskId, "started") };
      }
      if (result.status === "RETRY") {
        const event = progress(result.taskId, "retry", result.error);
        attempt.retries++;
        return { kind: "progress", progress: event };
      }
      if (!CELERY_READY_STATES.includes(result.status)) return { kind: "progress" };
      const finishedWallMs = Math.max(result.dateDone ?? Date.now(), attempt.startedWallMs);
      const reply: TaskReply = {
        task_id: result.taskId,
        task: fn,
        status: result.status === "SUCCESS" ? "success" : "error",
        result: result.status === "SUCCESS" ? result.result : null,
        error: result.status === "SUCCESS" ? null : result.error ?? null,
        worker: attempt.worker ?? `celery worker of ${route.queue}`,
        queue: route.queue,
        attempts: attempt.number + attempt.retries,
        started_at: new Date(attempt.startedWallMs).toISOString(),
        finished_at: new Date(finishedWallMs).toISOString(),
        duration_ms: finishedWallMs - attempt.startedWallMs,
      };
      return { kind: "reply", reply };
    },
  };
}

/**
 * Sends one attempt in `protocol` and resolves with how it ended: the
 * client's one call path, which a Celery call goes down once per attempt.
 */
export type SendAttempt = (
  protocol: CallProtocol,
  options: TaskCallOptions & { timeoutMs: number; taskId: string },
) => Promise<CallOutcome>;

function retryable(error: TaskError | null): boolean {
  return error !== null && !NON_RETRYABLE_CELERY_ERRORS.has(error.type);
}

/**
 * Calls the Celery task of `fn` and waits for its final result, retrying a
 * failure as the module documentation says, all within `timeoutMs`, each
 * attempt sent by `send`. The outcome is the last attempt's, timed from the
 * first request. `random` is the backoff's jitter, for tests.
 */
export async function callCelery(
  send: SendAttempt,
  fn: string,
  route: FunctionRoute,
  options: TaskCallOptions & { timeoutMs: number },
  random?: () => number,
): Promise<CallOutcome> {
  const { celeryName } = route;
  if (route.protocol !== "celery" || celeryName === undefined) {
    throw new TypeError(
      `Cannot call '${fn}' as a Celery task as it has no Celery task name: set protocol celery and its celery_name`,
    );
  }
  const { retry = {}, ...call } = options;
  const policy = {
    ...CELERY_RETRY_DEFAULTS,
    ...(retry.max_retries !== undefined && { maxRetries: retry.max_retries }),
    ...(retry.base_delay_ms !== undefined && { baseDelayMs: retry.base_delay_ms }),
    ...(retry.factor !== undefined && { factor: retry.factor }),
    ...(retry.max_delay_ms !== undefined && { maxDelayMs: retry.max_delay_ms }),
  };
  const taskId = options.taskId ?? crypto.randomUUID();
  const endsAt = performance.now() + options.timeoutMs;
  let first: CallOutcome | undefined;
  let attemptNumber = 1;
  for (let retries = 0;; retries++) {
    const outcome = await send(celeryProtocol(fn, { ...route, celeryName }, attemptNumber), {
      ...call,
      taskId,
      timeoutMs: Math.max(1, endsAt - performance.now()),
      onSent: first === undefined ? options.onSent : undefined,
    });
    first ??= outcome;
    const whole = { ...outcome, sentAt: first.sentAt, sentWallMs: first.sentWallMs };
    if (outcome.kind === "timeout" || outcome.reply.status === "success") return whole;
    const { reply } = outcome;
    if (!retryable(reply.error) || retries >= policy.maxRetries) return whole;
    const delayMs = backoffDelay(retries + 1, policy, random);
    if (endsAt - performance.now() <= delayMs) return whole;
    options.onProgress?.({
      task_id: taskId,
      task: fn,
      event: "retry",
      worker: reply.worker,
      queue: route.queue,
      attempt: reply.attempts,
      at: new Date().toISOString(),
      ...(reply.error && { error: reply.error }),
      delay_ms: delayMs,
      max_retries: policy.maxRetries,
    });
    await new Promise((resolve) => setTimeout(resolve, delayMs));
    attemptNumber = reply.attempts + 1;
  }
}
