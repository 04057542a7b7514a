/**
 * The client of the functions, and its one call path: a call is routed to
 * its function's queue, encoded in the protocol its workers speak (native,
 * or Celery's: `celery.ts`), published, and waited for by correlation id
 * until its reply or its deadline. The deadline travels with the request, so
 * that no worker starts it after the caller stopped waiting. Replies come by
 * Direct Reply-to (fast, but lost with the connection: a node that dies
 * takes them along), or through a reply queue of the client's own, a quorum
 * queue that outlives the loss of any one node of a cluster (see
 * {@linkcode ReplyMode} and docs/cluster.md). A reply nobody waits for
 * (unknown, late, or a duplicate from a redelivered request) and a reply
 * from a sender other than the function's workers are counted and ignored.
 *
 * Every kind of call goes down the same path: `request()` sends one
 * (`#send`) and waits for its end; `call()` and `callAll()` judge the
 * outcome; a Celery call sends one attempt after another; `ping()`
 * broadcasts and collects.
 *
 * @module
 */

import { emitEvent, type EmitOptions } from "./emit.ts";
import { setImmediate } from "node:timers";
import {
  type Broker,
  BrokerUnavailableError,
  type Consumer,
  type Delivery,
} from "../core/broker/mod.ts";
import {
  BCC_HEADER,
  CANCELLED,
  CONTROL_EXCHANGE,
  DEADLINE_EXCEEDED,
  type Message,
  NAMED_REPLY_PREFETCH,
  NAMED_REPLY_QUEUE_IDLE_MS,
  NAMED_REPLY_QUEUE_MAX_LENGTH,
  namedReplyQueueOf,
  type Payload,
  replyQueueName,
  type TaskProgress,
} from "../core/contract/mod.ts";
import { CallBook, type CallState } from "./call_book.ts";
import { cancelCall, type CancelOptions, type CancelResult } from "./cancel_call.ts";
import { DeadlineTimer } from "../core/deadline_timer.ts";
import type { TraceIds } from "../core/trace_context.ts";
import { callCelery } from "./celery.ts";
import {
  type StreamCall,
  streamCalls,
  type StreamedOutcome,
  type StreamOptions,
} from "./stream.ts";
import { TaskCancelledError, TaskFailedError, TaskTimeoutError } from "./errors.ts";
import type { FunctionRoute } from "../core/registry.ts";
import {
  type CallOutcome,
  type CallProtocol,
  isExpectedSender,
  NATIVE_PROTOCOL,
  type TaskCallOptions,
} from "./protocol.ts";
import {
  callerName,
  type CallTrace,
  type SentEvent,
  startCallTrace,
  startSentEvents,
} from "./trace.ts";
import {
  type PingResult,
  pingWorkers,
  waitForWorkers,
  type WaitForWorkersOptions,
} from "./workers.ts";

/** Default time a call waits for its reply. */
export const DEFAULT_CALL_TIMEOUT_MS = 30_000;

/** One call of {@linkcode TaskClient.callAll}. */
export interface TaskCall extends TaskCallOptions {
  /** The function's name, such as `task_a`. */
  function: string;
  /** The function's input, a JSON object. */
  payload?: Payload;
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
 *
 * Pings go by Direct Reply-to in either mode: a pong is worth nothing once
 * its ping's time is over, so it need not outlive a node.
 */
export type ReplyMode = "direct" | "queue";

/** A reply queue with no consumer for this long (a client that died) is deleted by the broker. */
export const REPLY_QUEUE_IDLE_MS = 10 * 60_000;

/** Options for {@linkcode TaskClient.open}. */
export interface TaskClientOptions {
  /** Each function the client may call: its queue and its workers' broker user. */
  functions: ReadonlyMap<string, FunctionRoute>;
  /** Where the broker is, safe to print. @default {"broker"} */
  label?: string;
  /** @default {DEFAULT_CALL_TIMEOUT_MS} */
  timeoutMs?: number;
  /**
   * Called with every message that arrives on the reply queue, before any
   * check or de-duplication: a tap for tests that count what the wire
   * carried (every reply per correlation id, duplicates included).
   */
  onWire?: (message: Message) => void;
  /** @default {"direct"} */
  replies?: ReplyMode;
  /** Called by `close()` once the reply queue is closed: ends what the client owns. */
  onClose?: () => Promise<void>;
  /**
   * Publish a `task-sent` event to the events exchange for every request
   * the broker takes, for live views such as `deno task dashboard`.
   * @default {false}
   */
  events?: boolean;
  /**
   * The name in those events.
   * @default {"<broker user>@<host>-<pid>"}
   */
  caller?: string;
  /**
   * A name of the caller's own: its replies and the record of the calls it
   * submits then wait in a durable quorum queue named from its broker user
   * and this name (`replies.named.<user>.<name>`), which outlives the
   * process, so that a program that restarts with the same name collects
   * what it submitted before (see `call_book.ts`). The queue is kept at
   * `close()`. 1 to 64 of `a-z`, `0-9`, `_` and `-`.
   */
  name?: string;
  /**
   * With `name`: a file where each collected outcome is written (and synced)
   * before the queue lets it go, so that none is collected twice across a
   * crash. Without it, a call collected just before a crash comes again.
   */
  journal?: string;
  /**
   * With `name`: how long the queue waits for its caller before the broker
   * deletes it with what it holds.
   * @default {NAMED_REPLY_QUEUE_IDLE_MS}
   */
  replyQueueIdleMs?: number;
}

/** Options for {@linkcode TaskClient.submit}: a call's options, without its progress. */
export type SubmitOptions = Omit<TaskCallOptions, "onProgress" | "onSent">;

/** A call waiting for its end. */
interface Pending {
  protocol: CallProtocol;
  resolve: (outcome: CallOutcome) => void;
  reject: (error: Error) => void;
  onProgress?: (progress: TaskProgress) => void;
  /** The broker user whose answers count, besides this client's own. */
  sender: string;
  sentAt: number;
  sentWallMs: number;
  /** `performance.now()` after which the call ends as a timeout. */
  deadline: number;
  /** False until the broker confirmed the request or the worker answered. */
  sent: boolean;
  onSent?: (trace: TraceIds) => void;
  /** The call's span; `undefined` when tracing is off. */
  trace?: CallTrace;
}

/** A broadcast collecting its answers. */
interface Collecting {
  answers: Message[];
  check: () => void;
}

const NO_TRACE_IDS: TraceIds = Object.freeze({});

// Expired calls are swept at most this often: one timer for all calls,
// instead of one each, which costs much with thousands in flight.
const SWEEP_MS = 5;

/** Replies a client holds unacknowledged from its reply queue at once. */
const REPLY_PREFETCH = 1000;

/** Calls started in one turn of the event loop by {@linkcode fanOut}. */
const FAN_OUT_SLICE = 128;

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Starts `start(item)` for every item, {@linkcode FAN_OUT_SLICE} per turn of
 * the event loop, and resolves with their results in order, as `Promise.all`
 * does. The AMQP library writes what is published only on a later turn, so
 * a loop that publishes ten thousand requests in one turn sends nothing
 * until it has encoded them all; a slice at a time puts the first requests
 * on the wire while the rest are being made, every call still in flight at once.
 */
export async function fanOut<T, R>(
  items: readonly T[],
  start: (item: T) => Promise<R>,
  slice = FAN_OUT_SLICE,
): Promise<R[]> {
  const started: Promise<R>[] = [];
  for (let i = 0; i < items.length; i++) {
    if (i > 0 && i % slice === 0) await nextTurn();
    const call = start(items[i]);
    // Seen now, so that a call failing while later slices start is not an
    // unhandled rejection; Promise.all below still rejects with it.
    call.catch(() => {});
    started.push(call);
  }
  return await Promise.all(started);
}

/** Calls functions by name; see the module documentation. Make one with `connect()`. */
export class TaskClient {
  /** Where the broker is, safe to print (password masked). */
  readonly broker: string;
  /** Each function this client may call, with its queue and its workers' broker user. */
  readonly functions: ReadonlyMap<string, FunctionRoute>;
  /** Replies received that no call took: unknown or late, invalid, or from an unexpected sender. */
  readonly ignored: IgnoredReplies = { unknown: 0, invalid: 0, unexpectedSender: 0 };
  readonly #broker: Broker;
  readonly #timeoutMs: number;
  readonly #onClose?: () => Promise<void>;
  readonly #onWire?: (message: Message) => void;
  readonly #pending = new Map<string, Pending>();
  readonly #collecting = new Map<string, Collecting>();
  readonly #deadlines = new DeadlineTimer((now) => this.#expire(now), SWEEP_MS);
  #onSentEvent?: (event: SentEvent) => void;
  #replyTo = "";
  /** This client's reply queue and its consumer, in `queue` mode, until it is deleted. */
  #replyQueue: { name: string; consumer: Consumer } | undefined;
  /** The named queue, with its consumer: kept at close. */
  #named: { name: string; consumer: Consumer } | undefined;
  /** The calls submitted and not collected. */
  #book!: CallBook;
  /** Calls being submitted now, whose requests carry a copy to the named queue. */
  readonly #submitting = new Set<string>();
  /** Direct Reply-to for pings, opened at the first ping in `queue` mode. */
  #pingReplyTo: Promise<string> | undefined;
  #failure: Error | undefined;
  #closed: Promise<void> | undefined;

  private constructor(broker: Broker, options: TaskClientOptions) {
    this.#broker = broker;
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    this.#onClose = options.onClose;
    this.#onWire = options.onWire;
    this.broker = options.label ?? "broker";
    this.functions = options.functions;
  }

  /** A client over `broker`, with its reply queue open. */
  static async open(broker: Broker, options: TaskClientOptions): Promise<TaskClient> {
    const client = new TaskClient(broker, options);
    if (options.events) {
      client.#onSentEvent = await startSentEvents(
        broker,
        options.caller ?? callerName(broker.user),
      );
    }
    const receive = (message: Message) => void client.#receive(message);
    if (options.name !== undefined) {
      const name = namedReplyQueueOf(broker.user, options.name);
      await broker.declareQueue(name, {
        durable: true,
        type: "quorum",
        expiresMs: options.replyQueueIdleMs ?? NAMED_REPLY_QUEUE_IDLE_MS,
        maxLength: NAMED_REPLY_QUEUE_MAX_LENGTH,
      });
      client.#replyTo = name;
      client.#book = await CallBook.open(broker, {
        functions: options.functions,
        queue: name,
        journal: options.journal,
      });
      // Records and replies are held until their call is collected: room for all.
      const consumer = await broker.consume(
        name,
        (delivery) => client.#receiveNamed(delivery),
        { prefetch: NAMED_REPLY_PREFETCH },
      );
      client.#named = { name, consumer };
    } else if (options.replies === "queue") {
      const name = replyQueueName();
      await broker.declareQueue(name, {
        durable: true,
        type: "quorum",
        expiresMs: REPLY_QUEUE_IDLE_MS,
      });
      client.#replyTo = name;
      const consumer = await broker.consume(name, (delivery) => {
        receive(delivery);
        broker.ack(delivery);
      }, { prefetch: REPLY_PREFETCH });
      client.#replyQueue = { name, consumer };
    } else {
      client.#replyTo = await broker.openReplyQueue(receive);
      client.#pingReplyTo = Promise.resolve(client.#replyTo);
    }
    client.#book ??= await CallBook.open(broker, { functions: options.functions });
    broker.closed.then((error) =>
      client.#failAll(
        error ?? new BrokerUnavailableError("Cannot wait for replies as the connection was closed"),
      )
    );
    return client;
  }

  /** Where replies come back: `amq.rabbitmq.reply-to`, or this client's reply queue. */
  get replyTo(): string {
    return this.#replyTo;
  }

  /** The broker user this client sends as. */
  get user(): string {
    return this.#broker.user;
  }

  /** Calls currently waiting for their end. */
  get pending(): number {
    return this.#pending.size;
  }

  /** The queue and workers' user of `fn`; a `TypeError` naming the fix when it is unknown. */
  route(fn: string): FunctionRoute {
    const route = this.functions.get(fn);
    if (route) return route;
    throw new TypeError(
      `Cannot call '${fn}' as no queue is known for it: use one of ${
        [...this.functions.keys()].join(", ") || "(none)"
      }, or add it to functions/registry.yaml or the 'functions' option`,
    );
  }

  /**
   * Sends one request and resolves with how it ended: its reply, whatever
   * its status, or a timeout (a reply that says the deadline passed,
   * `DeadlineExceeded`, is one too). Rejects only when the broker fails:
   * the request was not confirmed, or the connection was lost while
   * waiting. The command-line tools judge outcomes themselves with this;
   * most callers want {@linkcode TaskClient.call}.
   */
  request(fn: string, payload?: Payload, options: TaskCallOptions = {}): Promise<CallOutcome> {
    const route = this.route(fn);
    const call = { ...options, timeoutMs: options.timeoutMs ?? this.#timeoutMs };
    const send = (protocol: CallProtocol, attempt: typeof call & { taskId: string }) =>
      this.#send(fn, route, payload, attempt, protocol);
    // A function served by Celery workers: Celery requests, and the retries made here.
    if (route.protocol === "celery") return callCelery(send, fn, route, call);
    return send(NATIVE_PROTOCOL, { ...call, taskId: call.taskId ?? crypto.randomUUID() });
  }

  /**
   * Calls `fn` with `payload` and resolves with its result, typed as the
   * caller says (nothing checks it). Rejects with a `TaskFailedError` when
   * the function failed, a `TaskTimeoutError` when no reply came in time,
   * and a `BrokerUnavailableError` when the broker went away; a
   * `TaskCancelledError` (a `TaskFailedError`) when the call was cancelled.
   */
  async call<T = unknown>(
    fn: string,
    payload?: Payload,
    options: TaskCallOptions = {},
  ): Promise<T> {
    let lastProgress: TaskProgress | undefined;
    const onProgress = options.onProgress &&
      ((progress: TaskProgress) => {
        lastProgress = progress;
        options.onProgress!(progress);
      });
    const outcome = await this.request(fn, payload, { ...options, onProgress });
    if (outcome.kind === "timeout") {
      throw new TaskTimeoutError(fn, {
        taskId: outcome.taskId,
        timeoutMs: options.timeoutMs ?? this.#timeoutMs,
        lastProgress,
      });
    }
    if (outcome.reply.error?.type === CANCELLED) throw new TaskCancelledError(fn, outcome.reply);
    if (outcome.reply.status === "error") throw new TaskFailedError(fn, outcome.reply);
    return outcome.reply.result as T;
  }

  /**
   * Calls every one of `calls` at once and resolves when all have ended,
   * each with its result or its error, in the order given.
   */
  callAll<T = unknown>(calls: readonly TaskCall[]): Promise<PromiseSettledResult<T>[]> {
    return fanOut(
      calls,
      ({ function: fn, payload, ...options }) =>
        this.call<T>(fn, payload, options).then(
          (value): PromiseSettledResult<T> => ({ status: "fulfilled", value }),
          (reason): PromiseSettledResult<T> => ({ status: "rejected", reason }),
        ),
    );
  }

  /**
   * Sends a call and resolves with its id as soon as the broker has it,
   * without waiting for its end: collect that with {@linkcode result} or
   * {@linkcode results}. On a client with a `name`, the call survives this
   * process: a program that connects again with the same name finds it
   * ({@linkcode outstanding}) and collects it. Rejects as `request()` does
   * when the broker does not take it, with a `RangeError` when too many
   * calls wait to be collected, and a `TypeError` for an id this client
   * submitted already or a function served by Celery workers.
   */
  async submit(fn: string, payload?: Payload, options: SubmitOptions = {}): Promise<string> {
    const route = this.route(fn);
    if (route.protocol === "celery") {
      throw new TypeError(
        `Cannot submit a call of '${fn}' as Celery workers serve it, whose answers only call() reads: use call()`,
      );
    }
    const id = options.taskId ?? crypto.randomUUID();
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs;
    this.#book.reserve(id, fn, Date.now() + timeoutMs);
    this.#submitting.add(id);
    let confirmed!: () => void;
    let refused!: (error: Error) => void;
    const sent = new Promise<void>((resolve, reject) => {
      confirmed = resolve;
      refused = reject;
    });
    this.request(fn, payload, { ...options, taskId: id, timeoutMs, onSent: () => confirmed() })
      .then((outcome) => this.#book.ended(id, outcome), (error: Error) => refused(error));
    try {
      await sent;
    } catch (error) {
      this.#book.unreserve(id);
      throw error;
    } finally {
      this.#submitting.delete(id);
    }
    return id;
  }

  /**
   * The outcome of the submitted call `id`, once it ended (a reply, either
   * status, or a timeout), collected: it is handed out once. Waits at most
   * `timeoutMs` (default: the client's), then rejects with a
   * `ResultNotReadyError`; a `TypeError` for an id this client did not
   * submit or collected already.
   */
  result(id: string, options: { timeoutMs?: number } = {}): Promise<CallOutcome> {
    return this.#book.result(id, options.timeoutMs ?? this.#timeoutMs);
  }

  /**
   * Every submitted call's outcome as it ends, each collected once, until
   * the client closes. One iteration at a time.
   */
  results(): AsyncGenerator<CallOutcome, void, undefined> {
    return this.#book.results();
  }

  /** Where the submitted call `id` is, without waiting or collecting it. */
  status(id: string): CallState {
    return this.#book.state(id);
  }

  /**
   * The ids of the calls submitted and not collected yet: this process's,
   * and, on a client with a `name`, those of every earlier run under that
   * name (read back from its queue first).
   */
  outstanding(): Promise<string[]> {
    return this.#book.outstanding();
  }

  /**
   * Cancels the call `id`: it never starts if it has not, its running
   * attempt is stopped if it runs, and its caller gets a `Cancelled` answer
   * (see `cancel_call.ts`). Only the broker user that sent a call, an
   * operator or the administrator may cancel it. Resolves with what the
   * workers said; cancelling twice or a finished call is harmless, and says so.
   */
  cancel(id: string, options: CancelOptions = {}): Promise<CancelResult> {
    if (this.#failure) return Promise.reject(this.#failure);
    const users = new Set([...this.functions.values()].map((route) => route.user));
    return cancelCall(
      {
        broker: this.#broker,
        ask: (queue, build, ask) => this.#broadcast(build, { ...ask, queue }),
        believes: (userId) => userId !== undefined && (users.has(userId) || userId === this.user),
      },
      id,
      { ...options, until: options.until ?? this.#book.deadlineOf(id) },
    );
  }

  /**
   * Emits `data` as an event of `type` (docs/events.md): every function
   * whose triggers match runs once with it as payload. Resolves with the
   * event's id once the broker has it; see {@linkcode emitEvent}.
   */
  emit(type: string, data?: Record<string, unknown>, options?: EmitOptions): Promise<string> {
    return emitEvent(this.#broker, type, data, options);
  }

  /**
   * Calls each of `calls` (an iterable, taken lazily), at most `window` at
   * once, and yields each outcome as it ends: a fan-out of any size in
   * bounded memory. See `client/stream.ts`.
   */
  stream<C = unknown>(
    calls: Iterable<StreamCall<C>> | AsyncIterable<StreamCall<C>>,
    options?: StreamOptions,
  ): AsyncGenerator<StreamedOutcome<C>, void, undefined> {
    return streamCalls(this, calls, options);
  }

  /**
   * Pings every live worker (see `pingWorkers`), by Direct Reply-to; answers
   * from a sender that is not the workers' user of the function they name
   * are only counted.
   */
  ping(options: { timeoutMs?: number; expected?: Map<string, number> } = {}): Promise<PingResult> {
    return pingWorkers({
      user: this.user,
      broadcast: (build, broadcast) => this.#broadcast(build, broadcast),
    }, { ...options, userOf: (fn) => this.functions.get(fn)?.user ?? fn });
  }

  /** Resolves with each queue's consumer count once every function in `fns` has a worker. */
  waitForWorkers(
    fns: readonly string[],
    options: WaitForWorkersOptions,
  ): Promise<Map<string, number>> {
    const needed = fns.map((task) => {
      const { queue, protocol } = this.route(task);
      return { task, queue, protocol };
    });
    return waitForWorkers(this.#broker, needed, options);
  }

  /**
   * Stops waiting (pending calls reject), stops consuming and deletes this
   * client's reply queue if it has one, while the connection is open, then
   * closes what the client owns.
   */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      this.#failAll(new BrokerUnavailableError("Cannot wait for replies as the client was closed"));
      // A named queue stays, with what it holds, for the next run under the name.
      await this.#named?.consumer.cancel().catch(() => {});
      await this.#book.close();
      const queue = this.#replyQueue;
      this.#replyQueue = undefined;
      if (queue !== undefined) {
        // Best effort, and brief: a queue left behind is deleted by the broker
        // once idle. Its consumer goes first, so that a connection lost
        // meanwhile is not resumed with a consumer of a deleted queue.
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([
          queue.consumer.cancel()
            .then(() => this.#broker.deleteQueue(queue.name))
            .catch(() => {}),
          new Promise((resolve) => timer = setTimeout(resolve, 2000)),
        ]);
        clearTimeout(timer);
      }
      await this.#onClose?.();
    })();
    return this.#closed;
  }

  /** Publishes one request of `fn` in `protocol` and waits for its end; see `request()`. */
  #send(
    fn: string,
    route: FunctionRoute,
    payload: Payload | undefined,
    options: TaskCallOptions & { timeoutMs: number; taskId: string },
    protocol: CallProtocol,
  ): Promise<CallOutcome> {
    if (this.#failure) return Promise.reject(this.#failure);
    const { taskId, timeoutMs } = options;
    const sentWallMs = Date.now();
    // Undefined when tracing is off: no span, and no trace headers.
    const trace = startCallTrace(fn, route.queue, taskId);
    const request = protocol.encode(fn, payload, {
      taskId,
      replyTo: this.#replyTo,
      progress: options.onProgress !== undefined,
      retry: options.retry,
      deadline: sentWallMs + timeoutMs,
      headers: this.#named && this.#submitting.has(taskId)
        ? { ...trace?.headers, [BCC_HEADER]: [this.#named.name] }
        : trace?.headers,
      // A traced request times its wait in the queue to the millisecond.
      stampSentAt: trace !== undefined,
      now: sentWallMs,
    });
    return new Promise<CallOutcome>((resolve, reject) => {
      const sentAt = performance.now();
      const pending: Pending = {
        protocol,
        resolve,
        reject,
        onProgress: options.onProgress,
        sender: route.user,
        sentAt,
        sentWallMs,
        deadline: sentAt + timeoutMs,
        sent: false,
        onSent: options.onSent,
        trace,
      };
      this.#pending.set(taskId, pending);
      this.#deadlines.schedule(pending.deadline);
      this.#broker.publish(route.queue, request).then(
        () => this.#markSent(pending),
        (error: Error) => {
          this.#forget(taskId);
          trace?.fail(error);
          reject(error);
        },
      );
      // Right behind the request on the same channel, not at its confirm:
      // so the event comes before the worker's, which start only once the
      // request is routed.
      this.#onSentEvent?.({ function: fn, queue: route.queue, taskId, trace: trace?.ids });
    });
  }

  /**
   * Publishes the control message `build` makes for a fresh correlation id
   * to the control exchange, with Direct Reply-to as its reply address, and
   * collects every answer carrying that id until `timeoutMs` passes or
   * `enough` says so. The caller judges each answer's sender.
   */
  async #broadcast(
    build: (correlationId: string, replyTo: string) => Message,
    options: { timeoutMs: number; enough?: (answers: Message[]) => boolean; queue?: string },
  ): Promise<Message[]> {
    if (this.#failure) throw this.#failure;
    this.#pingReplyTo ??= this.#broker.openReplyQueue((message) => this.#receive(message));
    const replyTo = await this.#pingReplyTo;
    const id = crypto.randomUUID();
    const answers: Message[] = [];
    let finish!: () => void;
    const done = new Promise<void>((resolve) => finish = resolve);
    const check = () => {
      if (options.enough?.(answers)) finish();
    };
    this.#collecting.set(id, { answers, check });
    const timer = setTimeout(finish, options.timeoutMs);
    try {
      const message = build(id, replyTo);
      if (options.queue !== undefined) await this.#broker.publish(options.queue, message);
      else await this.#broker.publishToExchange(CONTROL_EXCHANGE, message);
      check();
      await done;
      return answers;
    } finally {
      clearTimeout(timer);
      this.#collecting.delete(id);
    }
  }

  /**
   * Handles one message of the named queue: the book's (a record, a marker,
   * a reply to an earlier run's call), or a reply of this process's, which
   * the book holds until collection when it ends a submitted call.
   */
  #receiveNamed(delivery: Delivery): void {
    if (this.#book.take(delivery, (id) => this.#pending.has(id))) return;
    const id = delivery.properties.correlationId;
    if (this.#receive(delivery) && id !== undefined && this.#book.has(id)) {
      this.#book.hold(id, delivery);
    } else this.#broker.ack(delivery);
  }

  /** Handles one message from the reply queue or Direct Reply-to; true when it ended a call. */
  #receive(message: Message): boolean {
    this.#onWire?.(message);
    const id = message.properties.correlationId;
    const collecting = id === undefined ? undefined : this.#collecting.get(id);
    if (collecting) {
      collecting.answers.push(message);
      collecting.check();
      return false;
    }
    const pending = id === undefined ? undefined : this.#pending.get(id);
    if (!pending || id === undefined) {
      this.ignored.unknown++;
      return false;
    }
    if (!isExpectedSender(message.properties.userId, pending.sender, this.#broker.user)) {
      this.ignored.unexpectedSender++;
      return false;
    }
    const answer = pending.protocol.read(message);
    if (answer.kind === "invalid") {
      this.ignored.invalid++;
      return false;
    }
    if (answer.kind === "progress") {
      this.#markSent(pending);
      if (answer.progress) pending.onProgress?.(answer.progress);
      return false;
    }
    const { reply } = answer;
    this.#forget(id);
    this.#markSent(pending);
    // The deadline passed (before the task started, or while it ran): the
    // caller's timer fires at the same moment, and either way it is a timeout.
    const timedOut = reply.error?.type === DEADLINE_EXCEEDED;
    const { trace } = pending;
    trace?.answered(reply, timedOut);
    pending.resolve({
      ...(timedOut ? { kind: "timeout" } : { kind: "reply", reply }),
      taskId: id,
      sentAt: pending.sentAt,
      endedAt: performance.now(),
      sentWallMs: pending.sentWallMs,
      endedWallMs: Date.now(),
      ...(trace && { trace: trace.ids }),
    });
    return true;
  }

  /** An answer proves the broker had the request as well as a confirm does. */
  #markSent(pending: Pending): void {
    if (pending.sent) return;
    pending.sent = true;
    pending.onSent?.(pending.trace?.ids ?? NO_TRACE_IDS);
  }

  #forget(id: string): void {
    this.#pending.delete(id);
    if (this.#pending.size === 0) this.#deadlines.cancel();
  }

  /** Ends every call past its deadline; returns the next deadline. */
  #expire(now: number): number {
    const nowWall = Date.now();
    let next = Infinity;
    for (const [id, pending] of this.#pending) {
      if (pending.deadline <= now) {
        this.#pending.delete(id);
        const { trace } = pending;
        trace?.end({ outcome: "timeout" });
        pending.resolve({
          kind: "timeout",
          taskId: id,
          sentAt: pending.sentAt,
          endedAt: now,
          sentWallMs: pending.sentWallMs,
          endedWallMs: nowWall,
          ...(trace && { trace: trace.ids }),
        });
      } else next = Math.min(next, pending.deadline);
    }
    return next;
  }

  #failAll(error: Error): void {
    this.#failure ??= error;
    this.#deadlines.cancel();
    for (const pending of this.#pending.values()) {
      pending.trace?.fail(error);
      pending.reject(error);
    }
    this.#pending.clear();
  }
}
