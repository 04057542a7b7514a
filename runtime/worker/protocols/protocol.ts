/**
 * The protocols a worker answers in, behind one interface, as
 * `client/protocol.ts` is for callers: the native contract
 * ({@linkcode NATIVE_PROTOCOL}) and Celery's protocol 2 with its `rpc://`
 * results ({@linkcode CELERY_PROTOCOL}), so that a Celery client calls a
 * Deno function as it called the Celery task it replaces (docs/celery.md).
 * {@linkcode protocolOf} tells them apart by the delivery. A protocol reads
 * what a delivery asks into one request the runtime runs the same way,
 * says which sender the delivery's route proves, where it may answer, and
 * writes the answer. This is the only file of the worker that knows Celery.
 *
 * Celery's own fields map onto the native ones: `expires` is the deadline,
 * `timelimit` caps the attempt, `retries` counts attempts, `eta` delays.
 *
 * @module
 */

import type { Broker, Delivery } from "../../../core/broker/broker.ts";
import {
  ATTEMPT_HEADER,
  checkEnvelope,
  type DeadLetterReason,
  encodeCeleryReply,
  encodeReply,
  type EventAttributes,
  isCeleryMessage,
  type Message,
  parseCeleryRequest,
  parseRequest,
  type ReplyKind,
  SCHEDULE_EXCHANGE,
  type TaskError,
  type TaskReply,
  type TaskRequest,
} from "../../../core/contract/mod.ts";
import { isoNow } from "../../../core/log.ts";
import { DEFAULT_MAX_ETA_MS } from "../../defaults.ts";
import type { FunctionInfo } from "../../define_function.ts";
import type { AnsweredTask } from "../answered_tasks.ts";

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
  /** The id its answer carries, when the protocol names one (Celery's task id). */
  answerId?: string;
  /** Set when its sender wants no answer (Celery's `ignore_result`). */
  noAnswer?: boolean;
  /** The id of the task, when the protocol carries it elsewhere than `message_id` (an event's id). */
  taskId?: string;
  /** What the record of answers keys and fingerprints it by, when not its sender and task id. */
  record?: { id: string; fingerprint: string };
  /** The event that triggered it, for a run of an event. */
  event?: EventAttributes;
}

/** A delivery that breaks the contract; `task` when it named a function. */
export interface UnreadRequest {
  ok: false;
  error: TaskError;
  task?: string;
  /** Why it is dead-lettered. @default {"rejected"} */
  reason?: DeadLetterReason;
}

/** Options for {@linkcode WorkerProtocol.read}. */
export interface ReadRequestOptions {
  /** Largest body accepted, in bytes. */
  maxBytes: number;
  /**
   * The longest wait an eta may ask for, from now; a later eta is refused,
   * so that no request waits in the broker for good.
   * @default {DEFAULT_MAX_ETA_MS}
   */
  maxEtaMs?: number;
  /** The time an eta is measured from. @default {Date.now()} */
  now?: number;
}

/** What an answer says, whatever the protocol writes it in. */
export interface AnswerFacts {
  status: "success" | "error";
  error: TaskError | null;
  /** The result as JSON text, for a success. */
  resultJson?: string;
  /** The request as read, when it could be read. */
  read?: ReadRequest;
  taskId: string | null;
  /** The function the request named, once known. */
  task: string | null;
  attempts: number;
  worker: string;
  queue: string;
  /** When the attempt started, as ISO 8601. */
  startedAt: string;
  durationMs: number;
}

/** An answer to publish, and what a record of answers keeps of it. */
export interface Answer {
  /** Nothing, in a protocol that answers nobody (events). */
  message?: Message;
  /** What is kept to answer a copy of the request again, in a protocol that has copies answered. */
  kept?: AnsweredTask;
}

/** How a worker reads requests and answers them in one protocol. */
export interface WorkerProtocol {
  /** What its answers are, for the judgement of a `reply_to` (`isReplyDestination`). */
  readonly replyKind: ReplyKind;
  /** Fields the log lines of its tasks carry. */
  readonly logFields: Readonly<Record<string, string>>;
  /**
   * Whether a copy of a request answered before is answered from the record
   * of answers (`answered_tasks.ts`) rather than run again.
   */
  readonly remembersAnswers: boolean;
  /**
   * The sender that the route `delivery` took proves, or `undefined` when
   * its `user_id` must: a request that came through a route only some
   * users may write needs no `user_id`.
   */
  routedSender(delivery: Delivery, queue: string): string | undefined;
  /** Reads the request of `delivery` for the function `info`. */
  read(
    delivery: Delivery,
    info: FunctionInfo,
    options: ReadRequestOptions,
  ): ReadRequest | UnreadRequest;
  /** The answer to `delivery`, or `undefined` when its sender wants none. */
  answer(delivery: Delivery, facts: AnswerFacts): Answer | undefined;
  /** Declares what its requests come through, when the function speaks it; at every start. */
  declareRoute?(broker: Broker, queue: string, info: FunctionInfo): Promise<void>;
}

/** The native contract (docs/wire-contract.md): one request, one final reply. */
export const NATIVE_PROTOCOL: WorkerProtocol = Object.freeze(
  {
    replyKind: "reply",
    logFields: Object.freeze({}),
    remembersAnswers: true,
    // A tick comes through the schedule exchange, which only the
    // scheduler's user may write, bound to the queues of the functions it
    // schedules (ops/rabbitmq/definitions.ts): its route proves its sender.
    routedSender: (delivery: Delivery) =>
      delivery.exchange === SCHEDULE_EXCHANGE
        ? delivery.properties.userId ?? `scheduler via exchange '${SCHEDULE_EXCHANGE}'`
        : undefined,
    read(delivery: Delivery, info: FunctionInfo, options: ReadRequestOptions) {
      const parsed = parseRequest(delivery, { task: info.name, maxBytes: options.maxBytes });
      if (!parsed.ok) return { ok: false, error: parsed.error, task: parsed.task };
      return { ok: true, request: parsed.value, timeoutMs: info.timeoutMs };
    },
    answer(delivery: Delivery, facts: AnswerFacts): Answer {
      const reply: TaskReply = {
        task_id: facts.taskId,
        task: facts.task,
        status: facts.status,
        result: null,
        error: facts.error,
        worker: facts.worker,
        queue: facts.queue,
        attempts: facts.attempts,
        started_at: facts.startedAt,
        finished_at: isoNow(),
        duration_ms: facts.durationMs,
      };
      const { correlationId } = delivery.properties;
      const { resultJson } = facts;
      return {
        message: encodeReply(reply, correlationId, { resultJson }),
        kept: { reply, resultJson },
      };
    },
  } satisfies WorkerProtocol,
);

/**
 * Celery's protocol 2: a task message (`task` and `id` headers, a JSON body
 * of args, kwargs and embed), answered as Celery's `rpc://` result backend
 * expects, on the client's UUID-named reply queue.
 */
export const CELERY_PROTOCOL: WorkerProtocol = Object.freeze(
  {
    replyKind: "celery",
    logFields: Object.freeze({ protocol: "celery" }),
    // The record keeps native replies: a copy of a Celery request runs
    // again, as it would under a Celery worker.
    remembersAnswers: false,
    routedSender(delivery: Delivery, queue: string) {
      // Celery clients set no user_id: they publish through the exchange
      // named after the queue, which only Celery clients' users may write
      // (ops/rabbitmq/definitions.ts).
      if (delivery.exchange !== queue) return undefined;
      return delivery.properties.userId ?? `celery via exchange '${queue}'`;
    },
    read(delivery: Delivery, info: FunctionInfo, options: ReadRequestOptions) {
      const { maxBytes } = options;
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
        answerId: call.id,
        noAnswer: call.ignoreResult,
      };
    },
    answer(delivery: Delivery, facts: AnswerFacts): Answer | undefined {
      if (facts.read?.noAnswer) return undefined;
      // A request refused before it could be read still names its task id.
      const id = facts.read?.answerId ??
        String(delivery.properties.headers?.id ?? facts.taskId ?? "");
      return {
        message: encodeCeleryReply(
          id,
          facts.status === "success"
            ? { ok: true, resultJson: facts.resultJson! }
            : { ok: false, error: facts.error! },
        ),
      };
    },
    /**
     * The route Celery clients publish through: a direct exchange named after
     * the queue, bound to it with the queue's name as routing key. Only Celery
     * clients' broker users (and this worker's) may write to it, which is
     * what lets a Celery request that came through it run without `user_id`.
     * The binding is made at every start, so a queue that was deleted and
     * made again gets its route back; that takes the write permission on the
     * worker's own queue (ops/rabbitmq/definitions.ts).
     */
    async declareRoute(broker: Broker, queue: string, info: FunctionInfo) {
      if (info.celeryNames.length === 0) return;
      await broker.declareExchange(queue, "direct", { durable: true });
      await broker.bindQueue(queue, queue, queue);
    },
  } satisfies WorkerProtocol,
);

/** The protocol `delivery` speaks. */
export function protocolOf(delivery: Delivery): WorkerProtocol {
  return isCeleryMessage(delivery) ? CELERY_PROTOCOL : NATIVE_PROTOCOL;
}

/** Declares the routes of every protocol the function speaks; see {@linkcode WorkerProtocol.declareRoute}. */
export async function declareRoutes(
  broker: Broker,
  queue: string,
  info: FunctionInfo,
): Promise<void> {
  for (const protocol of [NATIVE_PROTOCOL, CELERY_PROTOCOL]) {
    await protocol.declareRoute?.(broker, queue, info);
  }
}
