/**
 * OpenTelemetry traces of a worker's tasks, through Deno's built-in
 * exporter (`OTEL_DENO=true` and the standard `OTEL_*` variables; off by
 * default, when every call here costs next to nothing). A request's W3C
 * `traceparent` and `tracestate` headers make its spans children of the
 * caller's: the wait in the queue, each attempt (a retry keeps the headers,
 * so every attempt is in the same trace), the reply and the dead letter.
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
import { traceContextOf, tracingEnabled } from "../../core/trace_context.ts";

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
