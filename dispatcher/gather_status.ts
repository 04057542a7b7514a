/**
 * What `deno task status` reports: each function's queue (depth, consumers
 * and dead letters) and the live workers that answer a ping.
 *
 * @module
 */

import type { Broker } from "../functions/_runtime/broker/broker.ts";
import type { WorkerInfo } from "../functions/_runtime/contract/mod.ts";
import { deadLetterQueueOf } from "../functions/_runtime/contract/mod.ts";
import { pingWorkers } from "./ping_workers.ts";
import { RpcClient } from "./rpc_client.ts";

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
  /** Workers that answered the ping for this queue. */
  workers: number;
}

/** The state of the system. */
export interface SystemStatus {
  queues: QueueStatus[];
  /** Every worker that answered, whatever its queue. */
  workers: WorkerInfo[];
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
  functions: { function: string; queue: string }[],
  options: GatherStatusOptions = {},
): Promise<SystemStatus> {
  const queues: QueueStatus[] = [];
  for (const { function: name, queue } of functions) {
    const info = await broker.inspectQueue(queue);
    const dlq = await broker.inspectQueue(deadLetterQueueOf(queue));
    queues.push({
      function: name,
      queue,
      exists: info !== null,
      messages: info?.messages ?? null,
      consumers: info?.consumers ?? null,
      dead_letters: dlq?.messages ?? null,
      workers: 0,
    });
  }
  const client = await RpcClient.open(broker);
  let workers: WorkerInfo[];
  try {
    workers = await pingWorkers(client, { timeoutMs: options.pingTimeoutMs ?? 1000 });
  } finally {
    client.close();
  }
  for (const queue of queues) {
    queue.workers = workers.filter((w) => w.queue === queue.queue).length;
  }
  return { queues, workers };
}
