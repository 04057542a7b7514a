/**
 * OpenTelemetry traces of a worker's tasks, through Deno's built-in
 * exporter (`OTEL_DENO=true` and the standard `OTEL_*` variables). A
 * request's W3C `traceparent` and `tracestate` headers make its spans
 * children of the caller's: the wait in the queue, each attempt (a retry
 * keeps the headers, so every attempt is in the same trace), the reply and
 * the dead letter. Off by default: then {@linkcode startTaskTrace} returns
 * one shared object that does nothing, and no span, header or attribute is
 * made.
 *
 * @module
 */

import { type Span, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { traceContextOf, type TraceIds, traceIdsOf, tracingEnabled } from "../trace_context.ts";

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

/** A step's span, ended once what it publishes is confirmed. */
export interface StepSpan {
  end(): void;
}

/** The spans of one delivery: its wait in the queue, its attempt, and what followed. */
export interface TaskTrace {
  /** The attempt's span, for log lines (`trace_id`, `span_id`); empty when off. */
  readonly ids: TraceIds;
  /** Ends the attempt with its outcome (`success`, `retry`, `error`, or a dead-letter reason). */
  end(outcome: string, error?: { type: string; message: string }): void;
  /**
   * A short span for publishing what the outcome calls for (the reply, a
   * retry, a dead letter), with one attribute; `undefined` when off, so
   * that the caller chains nothing on its publish.
   */
  step(name: string, key?: string, value?: string | number): StepSpan | undefined;
}

/** What {@linkcode startTaskTrace} returns with tracing off: shared, and does nothing. */
export const NO_TRACE: TaskTrace = Object.freeze({
  ids: Object.freeze({}),
  end() {},
  step: () => undefined,
});

/**
 * Starts the spans of a delivery: the wait in the queue (from `sentAtMs`,
 * when the caller sent it, if known) and the attempt, both children of the
 * caller's span. Returns {@linkcode NO_TRACE} when tracing is off.
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
  const attempt: Span = tracer.startSpan(`${task.function} attempt ${task.attempt}`, {
    kind: SpanKind.CONSUMER,
    attributes,
  }, parent);
  const within = trace.setSpan(parent, attempt);
  return {
    ids: traceIdsOf(attempt),
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
    step(name, key, value) {
      return tracer.startSpan(name, {
        kind: SpanKind.PRODUCER,
        attributes: key === undefined ? attributes : { ...attributes, [key]: value! },
      }, within);
    },
  };
}
