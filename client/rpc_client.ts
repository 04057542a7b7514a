/**
 * Calls functions over a broker and gathers their replies by correlation id.
 * Replies come by Direct Reply-to (fast, but lost with the connection: a
 * node that dies takes them along), or through a reply queue of the
 * client's own, a quorum queue that outlives the loss of any one node of a
 * cluster (see {@linkcode ReplyMode} and docs/cluster.md). Each call has its own deadline, sent with the request so that no worker
 * starts it after the caller stopped waiting. A reply nobody waits for
 * (unknown, late, or a duplicate from a redelivered request) and a reply
 * from a sender other than the function's workers are counted and ignored.
 *
 * @module
 */

import { type Broker, BrokerUnavailableError } from "../core/broker/broker.ts";
import {
  DEADLINE_EXCEEDED,
  type Message,
  type Payload,
  replyQueueName,
  type TaskProgress,
} from "../core/contract/mod.ts";
import type { TraceIds } from "../core/trace_context.ts";
import { type CallTrace, startCallTrace } from "./call_trace.ts";
import { type CallProtocol, NATIVE_PROTOCOL } from "./call_protocol.ts";
import { isExpectedSender } from "./senders.ts";
import { DeadlineTimer } from "../core/deadline_timer.ts";
import {
  type BroadcastOptions,
  type CallOptions,
  type CallOutcome,
  type IgnoredReplies,
  REPLY_QUEUE_IDLE_MS,
  type RpcClientOptions,
} from "./rpc_types.ts";
import type { SentEvent } from "./sent_events.ts";

export * from "./rpc_types.ts";

interface Pending {
  protocol: CallProtocol;
  resolve: (outcome: CallOutcome) => void;
  reject: (error: Error) => void;
  onProgress?: (progress: TaskProgress) => void;
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

const NO_TRACE_IDS: TraceIds = Object.freeze({});

// Expired calls are swept at most this often: one timer for all calls,
// instead of one each, which costs much with thousands in flight.
const SWEEP_MS = 5;

interface Collecting {
  answers: Message[];
  check: () => void;
}

/** Replies a client holds unacknowledged from its reply queue at once. */
const REPLY_PREFETCH = 1000;

/** A caller of functions with its own reply queue. */
export class RpcClient {
  readonly #broker: Broker;
  readonly #pending = new Map<string, Pending>();
  readonly #collecting = new Map<string, Collecting>();
  readonly #onWire?: (message: Message) => void;
  readonly #onSentEvent?: (event: SentEvent) => void;
  #replyTo = "";
  /** This client's reply queue, in `queue` mode. */
  #replyQueue: string | undefined;
  /** Messages received that no call took, by why. */
  readonly ignored: IgnoredReplies = { unknown: 0, invalid: 0, unexpectedSender: 0 };
  #failure: Error | undefined;
  readonly #deadlines = new DeadlineTimer((now) => this.#expire(now), SWEEP_MS);

  private constructor(broker: Broker, options: RpcClientOptions) {
    this.#broker = broker;
    this.#onWire = options.onWire;
    this.#onSentEvent = options.onSentEvent;
  }

  /** Opens a reply queue on `broker` and returns a client using it. */
  static async open(broker: Broker, options: RpcClientOptions = {}): Promise<RpcClient> {
    const client = new RpcClient(broker, options);
    if (options.replies === "queue") {
      const name = replyQueueName();
      await broker.declareQueue(name, {
        durable: true,
        type: "quorum",
        expiresMs: REPLY_QUEUE_IDLE_MS,
      });
      client.#replyQueue = name;
      client.#replyTo = name;
      await broker.consume(name, (delivery) => {
        client.receive(delivery);
        broker.ack(delivery);
      }, { prefetch: REPLY_PREFETCH });
    } else {
      client.#replyTo = await broker.openReplyQueue((message) => client.receive(message));
    }
    broker.closed.then((error) =>
      client.#failAll(
        error ?? new BrokerUnavailableError("Cannot wait for replies as the connection was closed"),
      )
    );
    return client;
  }

  /** Where this client's replies come back: `amq.rabbitmq.reply-to`, or its reply queue. */
  get replyTo(): string {
    return this.#replyTo;
  }

  /** The broker user this client's connection authenticated as. */
  get user(): string {
    return this.#broker.user;
  }

  /** Calls currently waiting for a reply. */
  get pending(): number {
    return this.#pending.size;
  }

  /**
   * Sends one request and waits for its reply or its deadline. A reply that
   * says the deadline passed (`DeadlineExceeded`) ends the call as a
   * timeout too. Rejects only when the broker fails: the request was not
   * confirmed, or the connection was lost while waiting.
   */
  call(
    queue: string,
    task: string,
    payload: Payload | undefined,
    options: CallOptions,
  ): Promise<CallOutcome> {
    const taskId = options.taskId ?? crypto.randomUUID();
    if (this.#failure) return Promise.reject(this.#failure);
    const sentWallMs = Date.now();
    // Undefined when tracing is off: no span, and no trace headers.
    const trace = startCallTrace(task, queue, taskId);
    const protocol = options.protocol ?? NATIVE_PROTOCOL;
    const request = protocol.encode({
      task,
      payload,
      taskId,
      replyTo: this.#replyTo,
      progress: options.onProgress !== undefined,
      retry: options.retry,
      deadline: sentWallMs + options.timeoutMs,
      headers: trace?.headers,
      // A traced request times its wait in the queue to the millisecond.
      stampSentAt: trace !== undefined,
      now: sentWallMs,
    });
    return new Promise<CallOutcome>((resolve, reject) => {
      const sentAt = performance.now();
      const deadline = sentAt + options.timeoutMs;
      const pending: Pending = {
        protocol,
        resolve,
        reject,
        onProgress: options.onProgress,
        sender: options.sender ?? task,
        sentAt,
        sentWallMs,
        deadline,
        sent: false,
        onSent: options.onSent,
        trace,
      };
      this.#pending.set(taskId, pending);
      this.#deadlines.schedule(deadline);
      this.#broker.publish(queue, request).then(() => this.#markSent(pending), (error: Error) => {
        this.#forget(taskId);
        trace?.fail(error);
        reject(error);
      });
      // Right behind the request on the same channel, not at its confirm:
      // so the event comes before the worker's, which start only once the
      // request is routed.
      this.#onSentEvent?.({ function: task, queue, taskId, trace: trace?.ids });
    });
  }

  /**
   * Publishes the message `build` makes for a fresh correlation id and this
   * client's reply queue to an exchange, and collects every answer carrying
   * that correlation id until `timeoutMs` passes or `enough` says so. For
   * questions that many answer, such as a ping of every worker; the caller
   * judges each answer's sender (see `ping_workers.ts`).
   */
  async broadcast(
    exchange: string,
    build: (correlationId: string, replyTo: string) => Message,
    options: BroadcastOptions,
  ): Promise<Message[]> {
    if (this.#failure) throw this.#failure;
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
      await this.#broker.publishToExchange(exchange, build(id, this.#replyTo));
      check();
      await done;
      return answers;
    } finally {
      clearTimeout(timer);
      this.#collecting.delete(id);
    }
  }

  /** @internal Handles one message from the reply queue. */
  receive(message: Message): void {
    this.#onWire?.(message);
    const id = message.properties.correlationId;
    const collecting = id === undefined ? undefined : this.#collecting.get(id);
    if (collecting) {
      collecting.answers.push(message);
      collecting.check();
      return;
    }
    const pending = id === undefined ? undefined : this.#pending.get(id);
    if (!pending || id === undefined) {
      this.ignored.unknown++;
      return;
    }
    if (!isExpectedSender(message.properties.userId, pending.sender, this.#broker.user)) {
      this.ignored.unexpectedSender++;
      return;
    }
    const answer = pending.protocol.read(message);
    if (answer.kind === "invalid") {
      this.ignored.invalid++;
      return;
    }
    if (answer.kind === "progress") {
      this.#markSent(pending);
      if (answer.progress) pending.onProgress?.(answer.progress);
      return;
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

  /**
   * Stops waiting: every call still pending rejects. Then deletes this
   * client's reply queue, if it has one, while the connection is open.
   */
  async close(): Promise<void> {
    this.#failAll(new BrokerUnavailableError("Cannot wait for replies as the client was closed"));
    const queue = this.#replyQueue;
    this.#replyQueue = undefined;
    if (queue === undefined) return;
    // Best effort, and brief: a queue left behind is deleted by the broker once idle.
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.#broker.deleteQueue(queue).catch(() => {}),
      new Promise((resolve) => timer = setTimeout(resolve, 2000)),
    ]);
    clearTimeout(timer);
  }
}
