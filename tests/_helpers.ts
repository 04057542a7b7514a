/**
 * Helpers every kind of test shares: waiting for a condition, names no other
 * test uses, free ports, the queues a worker leaves behind. Pure: importing
 * this probes nothing and opens nothing, so unit tests beside the code
 * import it too. The gates that probe the machine (RabbitMQ, Docker,
 * Chromium) are in `_infra.ts`.
 *
 * @module
 */

import { deadLetterQueueOf, retryQueuesOf } from "../core/contract/names.ts";

/**
 * The queues a worker of `queue` declares and never deletes: the work queue,
 * its dead letters and its retry queues (which never expire).
 */
export function functionQueuesOf(queue: string): string[] {
  return [queue, deadLetterQueueOf(queue), ...retryQueuesOf(queue)];
}

/** Deletes every queue a worker of each of `queues` declared; missing ones are no error. */
export async function deleteFunctionQueues(
  broker: { deleteQueue(name: string): Promise<void> },
  ...queues: string[]
): Promise<void> {
  for (const queue of queues) {
    for (const name of functionQueuesOf(queue)) await broker.deleteQueue(name).catch(() => {});
  }
}

/** Fails with `message` unless `check` turns true before `timeoutMs`. */
export async function waitFor(
  check: () => boolean | Promise<boolean>,
  message: string,
  timeoutMs = 10_000,
  intervalMs = 25,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms: ${message}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** A queue (or user) name no other test uses. */
export function uniqueName(prefix: string): string {
  return `${prefix}_${crypto.randomUUID().slice(0, 8)}`;
}

/** Asks the OS for a free TCP port on 127.0.0.1. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}
