/**
 * The caller's span of a task: from handing the request to the broker to
 * its reply, its timeout or a broker failure. Its W3C trace context goes
 * into the request's headers, so that the worker's spans (the wait in the
 * queue, each attempt, the reply) are its children, across processes and
 * containers. See docs/tracing.md.
 *
 * @module
 */

import { SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import type { TaskReply } from "../core/contract/mod.ts";
import {
  traceHeadersOf,
  type TraceIds,
  traceIdsOf,
  tracingEnabled,
} from "../core/trace_context.ts";

const tracer = trace.getTracer("deno-task-system-client");

/** How a call ended, as its span says in `task.outcome`. */
export type CallTraceOutcome = "success" | "error" | "timeout" | "broker_error";

/** What the reply said, for the span's attributes. */
export interface CallTraceEnd {
  outcome: CallTraceOutcome;
  attempts?: number;
  worker?: string;
  error?: { type: string; message: string };
}

/** A call's span, with the headers that carry it. */
export interface CallTrace {
  /** `traceparent` (and `tracestate`) for the request's headers. */
  readonly headers: Record<string, string>;
  /** For log lines. */
  readonly ids: TraceIds;
  /** Ends the span; later calls do nothing. */
  end(end: CallTraceEnd): void;
  /** Ends the span with the reply (a `DeadlineExceeded` one as a timeout). */
  answered(reply: TaskReply, timedOut: boolean): void;
  /** Ends the span with a broker failure. */
  fail(error: Error): void;
}

/**
 * Starts the span of a call of `fn` on `queue`, or returns `undefined`
 * when tracing is off: then the request carries no trace headers, and the
 * call makes no span.
 */
export function startCallTrace(fn: string, queue: string, taskId: string): CallTrace | undefined {
  if (!tracingEnabled()) return undefined;
  const span = tracer.startSpan(`${fn} call`, {
    kind: SpanKind.CLIENT,
    attributes: {
      "messaging.system": "rabbitmq",
      "messaging.destination.name": queue,
      "task.function": fn,
      "task.queue": queue,
      "task.id": taskId,
    },
  });
  let ended = false;
  const call: CallTrace = {
    headers: traceHeadersOf(span),
    ids: traceIdsOf(span),
    answered(reply, timedOut) {
      call.end({
        outcome: timedOut ? "timeout" : reply.status,
        attempts: reply.attempts,
        worker: reply.worker,
        error: reply.error ?? undefined,
      });
    },
    fail(error) {
      call.end({ outcome: "broker_error", error: { type: error.name, message: error.message } });
    },
    end({ outcome, attempts, worker, error }) {
      if (ended) return;
      ended = true;
      span.setAttribute("task.outcome", outcome);
      if (attempts !== undefined) span.setAttribute("task.attempts", attempts);
      if (worker !== undefined) span.setAttribute("task.worker", worker);
      if (error) {
        span.setAttribute("error.type", error.type);
        span.setStatus({ code: SpanStatusCode.ERROR, message: error.message });
      } else if (outcome === "timeout") {
        span.setStatus({ code: SpanStatusCode.ERROR, message: "No reply before the deadline" });
      } else {
        span.setStatus({ code: SpanStatusCode.OK });
      }
      span.end();
    },
  };
  return call;
}
