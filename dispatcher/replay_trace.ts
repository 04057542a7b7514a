/**
 * The span of a dead letter's replay, in the trace of the task it was: a
 * child of the context its headers still carry (the caller's, kept through
 * retries and the dead letter), and the parent of the attempts it leads to,
 * as its own context replaces the letter's in the replayed request. So one
 * trace shows the call, its failed attempts, the dead letter, the replay
 * and the attempt that follows.
 *
 * @module
 */

import { SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import {
  TRACE_CONTEXT_HEADERS,
  traceContextOf,
  traceHeadersOf,
  tracingEnabled,
} from "../core/trace_context.ts";

const tracer = trace.getTracer("deno-task-system-operator");

/** A replay's span. */
export interface ReplayTrace {
  /** Ends it: `error` when the copy was not confirmed. */
  end(error?: Error): void;
}

/**
 * Starts the span of replaying a letter to `queue` and puts its trace
 * context into `headers` (the replayed request's), in place of the
 * letter's. Returns `undefined`, and leaves `headers` alone, when tracing
 * is off.
 */
export function startReplayTrace(
  headers: Record<string, unknown>,
  letter: { queue: string; taskId: string | null; reason: string },
): ReplayTrace | undefined {
  if (!tracingEnabled()) return undefined;
  const span = tracer.startSpan(`${letter.queue} replay`, {
    kind: SpanKind.PRODUCER,
    attributes: {
      "messaging.system": "rabbitmq",
      "messaging.destination.name": letter.queue,
      "task.queue": letter.queue,
      "task.id": letter.taskId ?? "",
      "task.reason": letter.reason,
    },
  }, traceContextOf(headers));
  for (const name of TRACE_CONTEXT_HEADERS) delete headers[name];
  Object.assign(headers, traceHeadersOf(span));
  return {
    end(error) {
      if (error) span.setStatus({ code: SpanStatusCode.ERROR, message: error.message });
      span.end();
    },
  };
}
