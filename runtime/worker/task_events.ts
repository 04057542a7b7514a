/**
 * A worker's task events (`TASK_EVENTS=true`): published to the events
 * exchange as tasks start and end, without waiting for the broker, and never
 * at a task's expense: an event that cannot be sent is dropped with a debug
 * line.
 *
 * @module
 */

import type { Broker } from "../../core/broker/broker.ts";
import { encodeTaskEvent, EVENTS_EXCHANGE, type TaskEvent } from "../../core/contract/mod.ts";
import type { Logger } from "../../core/log.ts";

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
