/**
 * What a worker tells the world about its tasks, each at no cost when no
 * one listens:
 *
 * - its counters since its process started, and their Prometheus text
 *   exposition (`/metrics`); they live as long as the process, across
 *   broker reconnections, as Prometheus expects of a counter;
 * - OpenTelemetry traces of its tasks, through Deno's built-in exporter
 *   (`OTEL_DENO=true` and the standard `OTEL_*` variables; off by default).
 *   A request's W3C `traceparent` and `tracestate` headers make its spans
 *   children of the caller's: the wait in the queue, each attempt (a retry
 *   keeps the headers, so every attempt is in the same trace), the reply
 *   and the dead letter;
 * - task events (`TASK_EVENTS=true`), published to the events exchange as
 *   tasks start and end, without waiting for the broker, and never at a
 *   task's expense: an event that cannot be sent is dropped with a debug
 *   line.
 *
 * @module
 */

import {
  INVALID_SPAN_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
} from "@opentelemetry/api";
import type { Broker } from "../../core/broker/broker.ts";
import { encodeTaskEvent, EVENTS_EXCHANGE, type TaskEvent } from "../../core/contract/mod.ts";
import type { Logger } from "../../core/log.ts";
import { traceContextOf, tracingEnabled } from "../../core/trace_context.ts";

/** Counts of what a worker has done since it started. */
export interface WorkerStats {
  /** Deliveries taken from the queue, retries included. */
  received: number;
  /** Tasks answered with a result. */
  succeeded: number;
  /** Tasks answered with an error after their retries, or at once when not retryable. */
  failed: number;
  /** Failed attempts scheduled for another try. */
  retried: number;
  /** Requests that broke the contract: answered with an error and dead-lettered. */
  rejected: number;
  /** Requests whose deadline passed before they could run: dead-lettered, never run. */
  expired: number;
  /** Requests from a sender the function does not accept: dead-lettered, never run. */
  unauthenticated: number;
  /** Requests whose `reply_to` is not a reply destination: dead-lettered, never run. */
  invalidReplyTo: number;
  /** Events through a binding none of the function's triggers makes: dead-lettered, never run. */
  untriggered: number;
  /** Calls cancelled: never started, or their running attempt stopped; dead-lettered. */
  cancelled: number;
  /** Replies, Celery results and pongs the broker refused (the caller's queue was full): not sent. */
  repliesRefused: number;
  /** Deliveries handed back unfinished (the worker stopping, a sandbox restarted): copied back to the queue. */
  handedBack: number;
  /** Deliveries returned to the queue as failed because their outcome could not be published. */
  settlesRefused: number;
  /** Deliveries returned to the queue as failed because their sandbox crashed while they ran. */
  sandboxFailed: number;
  /** Tasks whose handler is running now. */
  inFlight: number;
  /** Times a handler held the sandbox's thread and the worker stepped down to one task at a time. */
  stepsDown: number;
  /**
   * Copies of requests this process had answered (delivered again after a
   * lost connection, or sent again by a caller that lost its node): answered
   * again from the record, not run.
   */
  answeredAgain: number;
}

/** Upper bounds of the duration histogram's buckets, in seconds. */
export const DURATION_BUCKETS_S: readonly number[] = [
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
  60,
  300,
];

/** The outcomes a finished task can have, as in the `status` label. */
export type FinishedStatus = "success" | "error";

class Histogram {
  readonly counts: number[] = DURATION_BUCKETS_S.map(() => 0);
  count = 0;
  sum = 0;

  observe(seconds: number): void {
    this.count++;
    this.sum += seconds;
    DURATION_BUCKETS_S.forEach((bound, i) => {
      if (seconds <= bound) this.counts[i]++;
    });
  }
}

/** Labels every series of a worker carries. */
export interface MetricLabels {
  function: string;
  queue: string;
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function labelText(labels: Record<string, string>): string {
  const pairs = Object.entries(labels).map(([key, value]) => `${key}="${escapeLabel(value)}"`);
  return `{${pairs.join(",")}}`;
}

function formatNumber(value: number): string {
  return Number.isFinite(value) ? String(value) : value > 0 ? "+Inf" : "-Inf";
}

/**
 * A worker's metrics: the {@linkcode WorkerStats} the runtime updates, plus
 * a histogram of task durations.
 *
 * @example
 * ```ts
 * const metrics = new WorkerMetrics();
 * metrics.stats.succeeded++;
 * metrics.observe("success", 102.4);
 * metrics.render({ function: "task_a", queue: "queue_a" }, true);
 * ```
 */
export class WorkerMetrics {
  /** Updated by the runtime as tasks arrive and end. */
  readonly stats: WorkerStats = {
    received: 0,
    succeeded: 0,
    failed: 0,
    retried: 0,
    rejected: 0,
    expired: 0,
    unauthenticated: 0,
    invalidReplyTo: 0,
    untriggered: 0,
    cancelled: 0,
    repliesRefused: 0,
    handedBack: 0,
    settlesRefused: 0,
    sandboxFailed: 0,
    inFlight: 0,
    stepsDown: 0,
    answeredAgain: 0,
  };
  /** When the worker started. */
  readonly startedAt: Date;
  readonly #durations: Record<FinishedStatus, Histogram> = {
    success: new Histogram(),
    error: new Histogram(),
  };

  /** @param startedAt When the worker started. @default {new Date()} */
  constructor(startedAt: Date = new Date()) {
    this.startedAt = startedAt;
  }

  /** Records how long a finished task's last attempt took. */
  observe(status: FinishedStatus, durationMs: number): void {
    this.#durations[status].observe(durationMs / 1000);
  }

  /** The Prometheus text exposition format (version 0.0.4) of every metric. */
  render(labels: MetricLabels, consuming: boolean): string {
    const base = { function: labels.function, queue: labels.queue };
    const lines: string[] = [];
    const metric = (name: string, type: string, help: string) => {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    };
    const sample = (name: string, extra: Record<string, string>, value: number) => {
      lines.push(`${name}${labelText({ ...base, ...extra })} ${formatNumber(value)}`);
    };
    const { stats } = this;

    metric(
      "worker_tasks_total",
      "counter",
      "Tasks finished, by status: success, error (failed after its retries or not retryable), rejected (broke the contract), expired (deadline passed before it ran), unauthenticated (sender not allowed), invalid_reply_to (reply_to not a reply destination), untriggered (an event no trigger of the function matches), cancelled (its call was cancelled).",
    );
    sample("worker_tasks_total", { status: "success" }, stats.succeeded);
    sample("worker_tasks_total", { status: "error" }, stats.failed);
    sample("worker_tasks_total", { status: "rejected" }, stats.rejected);
    sample("worker_tasks_total", { status: "expired" }, stats.expired);
    sample("worker_tasks_total", { status: "unauthenticated" }, stats.unauthenticated);
    sample("worker_tasks_total", { status: "invalid_reply_to" }, stats.invalidReplyTo);
    sample("worker_tasks_total", { status: "untriggered" }, stats.untriggered);
    sample("worker_tasks_total", { status: "cancelled" }, stats.cancelled);

    metric(
      "worker_replies_refused_total",
      "counter",
      "Replies, Celery results and pongs the broker refused (the caller's queue full or refusing more): lost to the caller; the task was settled, not run again.",
    );
    sample("worker_replies_refused_total", {}, stats.repliesRefused);

    metric(
      "worker_deliveries_returned_total",
      "counter",
      "Deliveries given back to the queue, by how: handed_back (unfinished, not their fault: the worker stopping, a sandbox restart for another task; no delivery limit counts it), settle_refused (their outcome could not be published) or sandbox_failed (their sandbox crashed while they ran); the last two count toward the delivery limit.",
    );
    sample("worker_deliveries_returned_total", { how: "handed_back" }, stats.handedBack);
    sample("worker_deliveries_returned_total", { how: "settle_refused" }, stats.settlesRefused);
    sample("worker_deliveries_returned_total", { how: "sandbox_failed" }, stats.sandboxFailed);

    metric(
      "worker_steps_down_total",
      "counter",
      "Times a handler held the function's sandbox (CPU-bound work that does not yield) and the worker handed back the tasks it had not started, taking one at a time until the sandbox was free for a while.",
    );
    sample("worker_steps_down_total", {}, stats.stepsDown);

    metric("worker_task_retries_total", "counter", "Failed attempts scheduled for another try.");
    sample("worker_task_retries_total", {}, stats.retried);

    metric(
      "worker_deliveries_total",
      "counter",
      "Deliveries taken from the queue, retries included.",
    );
    sample("worker_deliveries_total", {}, stats.received);

    metric(
      "worker_task_duration_seconds",
      "histogram",
      "Time the last attempt of each finished task took, by status.",
    );
    for (const status of ["success", "error"] as const) {
      const histogram = this.#durations[status];
      DURATION_BUCKETS_S.forEach((bound, i) => {
        sample(
          "worker_task_duration_seconds_bucket",
          { status, le: String(bound) },
          histogram.counts[i],
        );
      });
      sample("worker_task_duration_seconds_bucket", { status, le: "+Inf" }, histogram.count);
      sample("worker_task_duration_seconds_sum", { status }, histogram.sum);
      sample("worker_task_duration_seconds_count", { status }, histogram.count);
    }

    metric(
      "worker_repeated_requests_total",
      "counter",
      "Copies of requests already answered by this process (delivered again after a lost connection): answered again from its record, not run.",
    );
    sample("worker_repeated_requests_total", {}, stats.answeredAgain);

    metric("worker_tasks_in_flight", "gauge", "Tasks whose handler is running now.");
    sample("worker_tasks_in_flight", {}, stats.inFlight);

    metric("worker_consuming", "gauge", "1 while the worker consumes its queue, else 0.");
    sample("worker_consuming", {}, consuming ? 1 : 0);

    metric(
      "worker_start_time_seconds",
      "gauge",
      "When the worker started, in seconds since the Unix epoch.",
    );
    sample("worker_start_time_seconds", {}, this.startedAt.getTime() / 1000);
    return lines.join("\n") + "\n";
  }
}

const tracer = trace.getTracer("deno-task-system-worker");

/** Attributes every span of a task carries. */
export interface TaskSpanAttributes {
  function: string;
  queue: string;
  taskId: string | null;
  attempt: number;
  worker: string;
}

function attributesOf(task: TaskSpanAttributes): Record<string, string | number> {
  return {
    "messaging.system": "rabbitmq",
    "messaging.destination.name": task.queue,
    "task.function": task.function,
    "task.queue": task.queue,
    "task.id": task.taskId ?? "",
    "task.attempt": task.attempt,
    "task.worker": task.worker,
  };
}

/** The spans of one delivery: its wait in the queue, its attempt, and what followed. */
export interface TaskTrace {
  /** The attempt's span, for log lines (`trace_id`, `span_id`). */
  readonly ids: { trace_id?: string; span_id?: string };
  /** Ends the attempt with its outcome (`success`, `retry`, `error`, or a dead-letter reason). */
  end(outcome: string, error?: { type: string; message: string }): void;
  /** A short span for publishing what the outcome calls for: the reply, a retry, a dead letter. */
  step(name: string, attributes?: Record<string, string | number>): Span;
}

const NO_SPAN = trace.wrapSpanContext(INVALID_SPAN_CONTEXT);

/** What a delivery's trace is when tracing is off: nothing, at no cost. */
export const NO_TRACE: TaskTrace = {
  ids: {},
  end() {},
  step: () => NO_SPAN,
};

/**
 * Starts the spans of a delivery: the wait in the queue (from `sentAtMs`,
 * when the caller sent it, if known) and the attempt, both children of the
 * caller's span.
 */
export function startTaskTrace(
  headers: Record<string, unknown> | undefined,
  task: TaskSpanAttributes,
  sentAtMs: number | undefined,
): TaskTrace {
  if (!tracingEnabled()) return NO_TRACE;
  const parent = traceContextOf(headers);
  const attributes = attributesOf(task);
  const now = Date.now();
  if (sentAtMs !== undefined && sentAtMs <= now) {
    tracer.startSpan(`${task.queue} wait`, {
      kind: SpanKind.INTERNAL,
      startTime: sentAtMs,
      attributes,
    }, parent).end(now);
  }
  const attempt = tracer.startSpan(`${task.function} attempt ${task.attempt}`, {
    kind: SpanKind.CONSUMER,
    attributes,
  }, parent);
  const within = trace.setSpan(parent, attempt);
  const { traceId, spanId } = attempt.spanContext();
  const recording = attempt.isRecording();
  return {
    ids: recording ? { trace_id: traceId, span_id: spanId } : {},
    end(outcome, error) {
      attempt.setAttribute("task.outcome", outcome);
      if (error) {
        attempt.setAttribute("error.type", error.type);
        attempt.setStatus({ code: SpanStatusCode.ERROR, message: error.message });
      } else {
        attempt.setStatus({ code: SpanStatusCode.OK });
      }
      attempt.end();
    },
    step(name, extra = {}) {
      return tracer.startSpan(name, {
        kind: SpanKind.PRODUCER,
        attributes: { ...attributes, ...extra },
      }, within);
    },
  };
}

/** Sends task events, or nothing when they are off. */
export type EmitTaskEvent = (event: Omit<TaskEvent, "at">) => void;

/** An emitter that sends nothing. */
export const NO_EVENTS: EmitTaskEvent = () => {};

/**
 * Declares the events exchange (a worker that may not create it checks that
 * it exists) and returns an emitter publishing to it.
 */
export async function startTaskEvents(broker: Broker, log: Logger): Promise<EmitTaskEvent> {
  await broker.declareExchange(EVENTS_EXCHANGE, "fanout", { durable: true });
  return (event) => {
    broker.publishToExchange(
      EVENTS_EXCHANGE,
      encodeTaskEvent({ ...event, at: new Date().toISOString() } as TaskEvent),
    ).catch((error) => log.debug("Could not send a task event", { error }));
  };
}
