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
  type Context,
  context,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
} from "@opentelemetry/api";

const tracer = trace.getTracer("deno-task-system-worker");

/** The W3C trace context headers a request may carry. */
export const TRACE_HEADERS = ["traceparent", "tracestate"] as const;

/** Attributes every span of a task carries. */
export interface TaskSpanAttributes {
  function: string;
  queue: string;
  taskId: string | null;
  attempt: number;
  worker: string;
}

/** The caller's trace context, read from a request's headers (a broken header is ignored). */
export function traceContextOf(headers: Record<string, unknown> | undefined): Context {
  if (!headers) return ROOT_CONTEXT;
  const carrier: Record<string, string> = {};
  for (const name of TRACE_HEADERS) {
    const value = headers[name];
    const text = value instanceof Uint8Array ? new TextDecoder().decode(value) : value;
    if (typeof text === "string" && text.length <= 512) carrier[name] = text;
  }
  return carrier.traceparent ? propagation.extract(ROOT_CONTEXT, carrier) : ROOT_CONTEXT;
}

/** The W3C headers that make a message's consumer continue `span`'s trace. */
export function traceHeadersOf(span: Span): Record<string, string> {
  const carrier: Record<string, string> = {};
  propagation.inject(trace.setSpan(context.active(), span), carrier);
  return carrier;
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
