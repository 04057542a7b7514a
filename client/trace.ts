/**
 * What a caller tells observers of its calls:
 *
 * - the call's span, from handing the request to the broker to its reply,
 *   its timeout or a broker failure. Its W3C trace context goes into the
 *   request's headers, so that the worker's spans (the wait in the queue,
 *   each attempt, the reply) are its children, across processes and
 *   containers. See docs/tracing.md.
 * - the caller's task event, `task-sent`, as Celery clients send theirs with
 *   `task_send_sent_event`: published to the events exchange right behind
 *   each request, when the caller turns task events on (`TASK_EVENTS=true`
 *   for the command-line tools, `events: true` for the client library).
 *   Fire and forget, like the workers' events: one that cannot be sent is
 *   dropped, and the call goes on.
 *
 * @module
 */

import { SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import type { Broker } from "../core/broker/mod.ts";
import { encodeTaskEvent, EVENTS_EXCHANGE, type TaskReply } from "../core/contract/mod.ts";
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

/** A request the broker has. */
export interface SentEvent {
  function: string;
  queue: string;
  taskId: string;
  /** The call's trace, when tracing is on. */
  trace?: TraceIds;
}

/** The name a caller gives in its events: `<broker user>@<host>-<pid>`, as worker ids read. */
export function callerName(user: string): string {
  let host = "localhost";
  try {
    // Needs --allow-sys=hostname; without it the name still tells callers apart by pid.
    if (Deno.permissions.querySync({ name: "sys", kind: "hostname" }).state === "granted") {
      host = Deno.hostname();
    }
  } catch {
    // Not allowed to ask.
  }
  return `${user}@${host}-${Deno.pid}`;
}

/**
 * Declares the events exchange (a user that may not create it checks that
 * it exists) and returns what publishes a `task-sent` event as `caller`.
 */
export async function startSentEvents(
  broker: Broker,
  caller: string,
): Promise<(event: SentEvent) => void> {
  await broker.declareExchange(EVENTS_EXCHANGE, "fanout", { durable: true });
  return (event) => {
    broker.publishToExchange(
      EVENTS_EXCHANGE,
      encodeTaskEvent({
        kind: "task-sent",
        function: event.function,
        queue: event.queue,
        task_id: event.taskId,
        at: new Date().toISOString(),
        worker: caller,
        trace_id: event.trace?.trace_id,
      }),
    ).catch(() => {
      // An event may be lost; the task never is.
    });
  };
}
