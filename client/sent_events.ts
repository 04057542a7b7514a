/**
 * The caller's task event, `task-sent`, as Celery clients send theirs with
 * `task_send_sent_event`: published to the events exchange right behind
 * each request, when the caller turns task events on (`TASK_EVENTS=true`
 * for the command-line tools, `events: true` for the client library).
 * Fire and forget, like the workers' events: one that cannot be sent is
 * dropped, and the call goes on.
 *
 * @module
 */

import type { Broker } from "../core/broker/broker.ts";
import { encodeTaskEvent, EVENTS_EXCHANGE } from "../core/contract/mod.ts";
import type { TraceIds } from "../core/trace_context.ts";

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
