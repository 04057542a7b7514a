/**
 * What `deno task status` reports: each function's queue (depth, consumers
 * and dead letters) and the live workers that answer a ping, with how many
 * answers came from a sender that may not speak for the function it named.
 * Celery workers answer no ping (their remote control is off, see
 * docs/celery.md): a function served by them counts its queue's consumers
 * as its live workers.
 *
 * @module
 */

import type { Broker } from "../core/broker/mod.ts";
import type { WorkerInfo } from "../core/contract/mod.ts";
import { deadLetterQueueOf } from "../core/contract/mod.ts";
import type { FunctionRoute } from "../core/registry.ts";
import { TaskClient } from "../client/task_client.ts";

/** A function of the configuration and the state of its queue. */
export interface QueueStatus {
  function: string;
  queue: string;
  /** False when the queue does not exist: no worker ever started. */
  exists: boolean;
  /** Messages waiting; `null` when the queue does not exist. */
  messages: number | null;
  consumers: number | null;
  /** Messages in `<queue>.dlq`; `null` when it does not exist. */
  dead_letters: number | null;
  /**
   * Workers that answered the ping for this queue; for a function served by
   * Celery workers, the queue's consumers.
   */
  workers: number;
  /** `celery` for a function served by Celery workers. */
  protocol: "native" | "celery";
}

/** The state of the system. */
export interface SystemStatus {
  queues: QueueStatus[];
  /** Every worker that answered, whatever its queue, from its function's broker user. */
  workers: WorkerInfo[];
  /** Answers to the ping from a sender that is not the workers' user of the function it named. */
  unexpected_senders: number;
}

/** Options for {@linkcode gatherStatus}. */
export interface GatherStatusOptions {
  /**
   * How long to wait for workers to answer the ping. The whole time is
   * waited, so that workers of queues not in the configuration answer too.
   * @default {1000}
   */
  pingTimeoutMs?: number;
}

/** Inspects each function's queues and pings the workers. */
export async function gatherStatus(
  broker: Broker,
  functions: Map<string, FunctionRoute>,
  options: GatherStatusOptions = {},
): Promise<SystemStatus> {
  const queues: QueueStatus[] = [];
  for (const [name, { queue, protocol }] of functions) {
    const info = await broker.inspectQueue(queue);
    const dlq = await broker.inspectQueue(deadLetterQueueOf(queue));
    queues.push({
      function: name,
      queue,
      exists: info !== null,
      messages: info?.messages ?? null,
      consumers: info?.consumers ?? null,
      dead_letters: dlq?.messages ?? null,
      workers: protocol === "celery" ? info?.consumers ?? 0 : 0,
      protocol: protocol ?? "native",
    });
  }
  const client = await TaskClient.open(broker, { functions });
  let ping;
  try {
    ping = await client.ping({ timeoutMs: options.pingTimeoutMs ?? 1000 });
  } finally {
    await client.close();
  }
  for (const queue of queues) {
    if (queue.protocol === "celery") continue;
    queue.workers = ping.workers.filter((w) => w.queue === queue.queue).length;
  }
  return { queues, workers: ping.workers, unexpected_senders: ping.unexpected };
}
