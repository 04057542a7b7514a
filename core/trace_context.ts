/**
 * W3C trace context on AMQP messages, for the parties that start or carry
 * on a task's trace outside the worker: the client that sends a request and
 * the operator tools that replay a dead letter (the worker reads the same
 * headers in `worker/tracing.ts`). Spans go through
 * `@opentelemetry/api`; Deno's built-in OpenTelemetry (`OTEL_DENO=true`)
 * registers the tracer and the W3C propagator and exports them, so no SDK
 * is needed.
 *
 * With OpenTelemetry off nothing here may cost more than a branch: callers
 * ask {@linkcode tracingEnabled} once and skip every span, header and
 * attribute object when it says no. See docs/tracing.md for the headers.
 *
 * @module
 */

import {
  type Context,
  context,
  propagation,
  ProxyTracerProvider,
  ROOT_CONTEXT,
  type Span,
  trace,
} from "@opentelemetry/api";

/**
 * The W3C trace context headers a request may carry (AMQP headers of the
 * same names, string values): `traceparent` names the caller's span,
 * `tracestate` carries vendor data along.
 */
export const TRACE_CONTEXT_HEADERS = ["traceparent", "tracestate"] as const;

/** Longest trace context header value read; a longer one is ignored, not parsed. */
const MAX_HEADER_CHARS = 512;

let enabled: boolean | undefined;

/**
 * Whether spans are recorded and exported: true once a tracer provider is
 * registered (Deno registers its own at start when `OTEL_DENO=true`).
 * Decided on the first call and kept, so hot paths pay one branch.
 */
export function tracingEnabled(): boolean {
  // With nothing registered, the API hands out its proxy, whose tracers
  // make only non-recording spans.
  return enabled ??= !(trace.getTracerProvider() instanceof ProxyTracerProvider);
}

/** Trace and span id of a span, as log lines carry them; empty when the span records nothing. */
export interface TraceIds {
  trace_id?: string;
  span_id?: string;
}

/** The ids of `span` for log lines, or none when it records nothing. */
export function traceIdsOf(span: Span): TraceIds {
  if (!span.isRecording()) return {};
  const { traceId, spanId } = span.spanContext();
  return { trace_id: traceId, span_id: spanId };
}

/**
 * The sender's trace context, read from a message's headers. A header that
 * is not text, too long or malformed is ignored (the propagator checks the
 * format), so a hostile one can at worst start a new trace.
 */
export function traceContextOf(headers: Record<string, unknown> | undefined): Context {
  if (!headers) return ROOT_CONTEXT;
  let carrier: Record<string, string> | undefined;
  for (const name of TRACE_CONTEXT_HEADERS) {
    const value = headers[name];
    const text = value instanceof Uint8Array ? new TextDecoder().decode(value) : value;
    if (typeof text === "string" && text.length <= MAX_HEADER_CHARS) {
      (carrier ??= {})[name] = text;
    }
  }
  return carrier?.traceparent ? propagation.extract(ROOT_CONTEXT, carrier) : ROOT_CONTEXT;
}

/** The W3C headers that make a message's consumer continue `span`'s trace. */
export function traceHeadersOf(span: Span): Record<string, string> {
  const carrier: Record<string, string> = {};
  propagation.inject(trace.setSpan(context.active(), span), carrier);
  return carrier;
}
