/**
 * Finds the live workers: a ping broadcast on the control exchange, which
 * every worker answers with its {@linkcode WorkerInfo}, as `celery inspect
 * ping` does. Workers that do not answer within the time are not listed.
 *
 * @module
 */

import {
  CONTROL_EXCHANGE,
  encodePing,
  type Message,
  parseWorkerInfo,
  type WorkerInfo,
} from "../functions/_runtime/contract/mod.ts";
import type { RpcClient } from "./rpc_client.ts";

/** Options for {@linkcode pingWorkers}. */
export interface PingWorkersOptions {
  /**
   * How long to wait for answers.
   * @default {1000}
   */
  timeoutMs?: number;
  /**
   * Workers expected per queue (such as each queue's consumer count): the
   * wait ends early once each queue has at least that many answers.
   */
  expected?: Map<string, number>;
}

function parseAnswers(answers: Message[]): WorkerInfo[] {
  const workers = new Map<string, WorkerInfo>();
  for (const answer of answers) {
    const parsed = parseWorkerInfo(answer.body);
    if (parsed.ok) workers.set(parsed.value.worker, parsed.value);
  }
  return [...workers.values()];
}

function covers(workers: WorkerInfo[], expected: Map<string, number>): boolean {
  const found = new Map<string, number>();
  for (const info of workers) found.set(info.queue, (found.get(info.queue) ?? 0) + 1);
  return [...expected].every(([queue, count]) => (found.get(queue) ?? 0) >= count);
}

/**
 * The answers to a ping, sorted by queue and worker id; duplicates and
 * invalid answers dropped. None when the control exchange does not exist.
 */
export async function pingWorkers(
  client: RpcClient,
  options: PingWorkersOptions = {},
): Promise<WorkerInfo[]> {
  const { expected } = options;
  let answers: Message[];
  try {
    answers = await client.broadcast(CONTROL_EXCHANGE, encodePing, {
      timeoutMs: options.timeoutMs ?? 1000,
      enough: expected && expected.size > 0
        ? (answers) => covers(parseAnswers(answers), expected)
        : undefined,
    });
  } catch (error) {
    // Every worker declares the exchange: without it, no worker ever ran.
    if (error instanceof TypeError) return [];
    throw error;
  }
  return parseAnswers(answers).sort((a, b) =>
    a.queue.localeCompare(b.queue) || a.worker.localeCompare(b.worker)
  );
}
