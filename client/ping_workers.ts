/**
 * Finds the live workers: a ping broadcast on the control exchange, which
 * every worker answers with its {@linkcode WorkerInfo}, as `celery inspect
 * ping` does. Workers that do not answer within the time are not listed,
 * and neither is an answer whose sender (`user_id`) is not the broker user
 * of the function it claims to serve: such forged pongs are only counted.
 *
 * @module
 */

import {
  CONTROL_EXCHANGE,
  encodePing,
  type Message,
  parseWorkerInfo,
  type WorkerInfo,
} from "../core/contract/mod.ts";
import type { RpcClient } from "./rpc_client.ts";
import { isExpectedSender } from "./senders.ts";

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
  /**
   * The broker user the workers of function `fn` run as.
   * @default {(fn) => fn}
   */
  userOf?: (fn: string) => string;
}

/** The answers to a ping. */
export interface PingResult {
  /** Live workers, sorted by queue and worker id. */
  workers: WorkerInfo[];
  /** Answers from a sender that may not speak for the function they name: not listed. */
  unexpected: number;
}

function parseAnswers(
  answers: Message[],
  ownUser: string,
  userOf: (fn: string) => string,
): PingResult {
  const workers = new Map<string, WorkerInfo>();
  let unexpected = 0;
  for (const answer of answers) {
    const parsed = parseWorkerInfo(answer.body);
    if (!parsed.ok) continue;
    const info = parsed.value;
    if (!isExpectedSender(answer.properties.userId, userOf(info.function), ownUser)) {
      unexpected++;
      continue;
    }
    workers.set(info.worker, info);
  }
  return { workers: [...workers.values()], unexpected };
}

function covers(workers: WorkerInfo[], expected: Map<string, number>): boolean {
  const found = new Map<string, number>();
  for (const info of workers) found.set(info.queue, (found.get(info.queue) ?? 0) + 1);
  return [...expected].every(([queue, count]) => (found.get(queue) ?? 0) >= count);
}

/**
 * Pings every worker and gathers the answers: duplicates and invalid answers
 * dropped, answers from unexpected senders counted. None when the control
 * exchange does not exist.
 */
export async function pingWorkers(
  client: RpcClient,
  options: PingWorkersOptions = {},
): Promise<PingResult> {
  const { expected } = options;
  const userOf = options.userOf ?? ((fn: string) => fn);
  let answers: Message[];
  try {
    answers = await client.broadcast(CONTROL_EXCHANGE, encodePing, {
      timeoutMs: options.timeoutMs ?? 1000,
      enough: expected && expected.size > 0
        ? (answers) => covers(parseAnswers(answers, client.user, userOf).workers, expected)
        : undefined,
    });
  } catch (error) {
    // The broker's contract: publishing to a missing exchange is a TypeError.
    // Every worker declares the exchange: without it, no worker ever ran.
    if (error instanceof TypeError) return { workers: [], unexpected: 0 };
    throw error;
  }
  const result = parseAnswers(answers, client.user, userOf);
  result.workers.sort((a, b) => a.queue.localeCompare(b.queue) || a.worker.localeCompare(b.worker));
  return result;
}
