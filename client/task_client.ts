/**
 * The client of the functions: calls them by name over an open broker,
 * each call a typed promise of its result (or a typed error), many at once,
 * with progress events on demand. It routes each function to its queue, in
 * the protocol its workers speak (native, or Celery's: `celery_call.ts`),
 * and believes only replies from that function's workers (`senders.ts`).
 *
 * @module
 */

import type { Broker } from "../core/broker/broker.ts";
import type { Message, Payload, RetryOverrides, TaskProgress } from "../core/contract/mod.ts";
import type { TraceIds } from "../core/trace_context.ts";
import { callCelery } from "./celery_call.ts";
import { TaskFailedError, TaskTimeoutError } from "./errors.ts";
import { fanOut } from "./fan_out.ts";
import type { FunctionRoute } from "../core/registry.ts";
import { type PingResult, pingWorkers } from "./ping_workers.ts";
import { type CallOutcome, type IgnoredReplies, type ReplyMode, RpcClient } from "./rpc_client.ts";
import { callerName, startSentEvents } from "./sent_events.ts";
import { waitForWorkers, type WaitForWorkersOptions } from "./wait_for_workers.ts";

/** Default time a call waits for its reply. */
export const DEFAULT_CALL_TIMEOUT_MS = 30_000;

/** Options of one call. */
export interface TaskCallOptions {
  /**
   * Stop waiting after this long; the request carries the same deadline, so
   * no worker starts it later.
   * @default {the client's timeoutMs}
   */
  timeoutMs?: number;
  /** Identifies the task in replies, logs and dead letters; a new UUID when absent. */
  taskId?: string;
  /**
   * Per-call retry settings, each overriding the function's own. For a
   * function served by Celery workers the client makes these retries itself
   * (default: none; see `celery_call.ts`).
   */
  retry?: RetryOverrides;
  /**
   * Receives the worker's progress events: `started` at each attempt, and
   * `retry` after a failed one. Asking for them doubles the messages back.
   */
  onProgress?: (progress: TaskProgress) => void;
  /**
   * Called once the broker has the request, with the call's trace and span
   * ids when tracing is on (`OTEL_DENO=true`), else `{}`.
   */
  onSent?: (trace: TraceIds) => void;
}

/** One call of {@linkcode TaskClient.callAll}. */
export interface TaskCall extends TaskCallOptions {
  /** The function's name, such as `task_a`. */
  function: string;
  /** The function's input, a JSON object. */
  payload?: Payload;
}

/** Options for {@linkcode TaskClient.open}. */
export interface TaskClientOptions {
  /** Each function the client may call: its queue and its workers' broker user. */
  functions: Map<string, FunctionRoute>;
  /** Where the broker is, safe to print. @default {"broker"} */
  label?: string;
  /** @default {DEFAULT_CALL_TIMEOUT_MS} */
  timeoutMs?: number;
  /** Sees every message on the reply queue before any check (see `RpcClientOptions`). */
  onWire?: (message: Message) => void;
  /**
   * Where replies come back: Direct Reply-to, or a reply queue of the
   * client's own that outlives the loss of a cluster node (see `ReplyMode`).
   * @default {"direct"}
   */
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
}

/** Calls functions by name; see the module documentation. Make one with `connect()`. */
export class TaskClient {
  readonly #rpc: RpcClient;
  readonly #broker: Broker;
  readonly #timeoutMs: number;
  readonly #onClose?: () => Promise<void>;
  #closed: Promise<void> | undefined;
  /** Where the broker is, safe to print (password masked). */
  readonly broker: string;
  /** Each function this client may call, with its queue and its workers' broker user. */
  readonly functions: ReadonlyMap<string, FunctionRoute>;

  private constructor(rpc: RpcClient, broker: Broker, options: TaskClientOptions) {
    this.#rpc = rpc;
    this.#broker = broker;
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    this.#onClose = options.onClose;
    this.broker = options.label ?? "broker";
    this.functions = options.functions;
  }

  /** A client over `broker`, with a reply queue of its own. */
  static async open(broker: Broker, options: TaskClientOptions): Promise<TaskClient> {
    const onSentEvent = options.events
      ? await startSentEvents(broker, options.caller ?? callerName(broker.user))
      : undefined;
    const rpc = await RpcClient.open(broker, {
      onWire: options.onWire,
      onSentEvent,
      replies: options.replies,
    });
    return new TaskClient(rpc, broker, options);
  }

  /** Where replies come back: `amq.rabbitmq.reply-to`, or this client's reply queue. */
  get replyTo(): string {
    return this.#rpc.replyTo;
  }

  /** The broker user this client sends as. */
  get user(): string {
    return this.#broker.user;
  }

  /** Replies received that no call took: unknown or late, invalid, or from an unexpected sender. */
  get ignored(): Readonly<IgnoredReplies> {
    return this.#rpc.ignored;
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
   * its status, or a timeout. Rejects only when the broker fails. The
   * command-line tools judge outcomes themselves with this; most callers
   * want {@linkcode TaskClient.call}.
   */
  request(fn: string, payload?: Payload, options: TaskCallOptions = {}): Promise<CallOutcome> {
    const route = this.route(fn);
    const call = {
      timeoutMs: options.timeoutMs ?? this.#timeoutMs,
      taskId: options.taskId,
      retry: options.retry,
      onProgress: options.onProgress,
      onSent: options.onSent,
    };
    // A function served by Celery workers: Celery requests, and the retries made here.
    if (route.protocol === "celery") return callCelery(this.#rpc, fn, route, payload, call);
    return this.#rpc.call(route.queue, fn, payload, { ...call, sender: route.user });
  }

  /**
   * Calls `fn` with `payload` and resolves with its result, typed as the
   * caller says (nothing checks it). Rejects with a `TaskFailedError` when
   * the function failed, a `TaskTimeoutError` when no reply came in time,
   * and a `BrokerUnavailableError` when the broker went away.
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
   * Pings every live worker (see `pingWorkers`); answers from a sender that
   * is not the workers' user of the function they name are only counted.
   */
  ping(options: { timeoutMs?: number; expected?: Map<string, number> } = {}): Promise<PingResult> {
    return pingWorkers(this.#rpc, {
      ...options,
      userOf: (fn) => this.functions.get(fn)?.user ?? fn,
    });
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

  /** Stops waiting (pending calls reject), then closes what the client owns. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      await this.#rpc.close();
      await this.#onClose?.();
    })();
    return this.#closed;
  }
}
