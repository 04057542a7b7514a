/**
 * What a caller learns of the workers:
 *
 * - who is alive: a ping broadcast on the control exchange, which every
 *   worker answers with its {@linkcode WorkerInfo}, as `celery inspect ping`
 *   does. Workers that do not answer within the time are not listed, and
 *   neither is an answer whose sender (`user_id`) is not the broker user of
 *   the function it claims to serve: such forged pongs are only counted.
 * - whether every queue a run needs has a worker consuming it, before
 *   dispatching. Workers that are starting get a few seconds; a missing one
 *   is reported by name, with how to start it, instead of tasks timing out.
 *
 * @module
 */

import type { Broker } from "../core/broker/mod.ts";
import {
  encodePing,
  type Message,
  parseWorkerInfo,
  type WorkerInfo,
} from "../core/contract/mod.ts";
import { isExpectedSender } from "./protocol.ts";

/** A function the run needs, and its queue. */
export interface NeededWorker {
  /** The function's name. */
  task: string;
  /** The queue a worker of it must consume. */
  queue: string;
  /** `celery` when Celery workers serve it. @default {"native"} */
  protocol?: "native" | "celery";
}

/** Options for {@linkcode waitForWorkers}. */
export interface WaitForWorkersOptions {
  /** Give up after this long. */
  timeoutMs: number;
  /**
   * Time between checks.
   * @default {250}
   */
  intervalMs?: number;
  /** Told once which functions are still missing when the first check fails. */
  onWaiting?: (missing: NeededWorker[]) => void;
}

/** Some queue of the run has no consumer. */
export class WorkersMissingError extends Error {
  /** The functions without a worker. */
  readonly missing: NeededWorker[];

  /**
   * Names each function in `missing`, with how to start its worker.
   *
   * @param missing The functions without a worker.
   * @param waitedMs How long it waited.
   */
  constructor(missing: NeededWorker[], waitedMs: number) {
    const lines = missing.map(({ task, queue, protocol }) =>
      protocol === "celery"
        ? `  ${task}: no Celery worker consumes '${queue}'. Start one: 'docker compose --profile celery up -d --build', or 'celery -A <app> worker -Q ${queue}'`
        : `  ${task}: no worker consumes '${queue}'. Start one: 'docker compose up -d --build' (all workers) or 'deno task worker ${task}'`
    );
    super(
      `Cannot dispatch as ${
        missing.length === 1 ? "a function has" : "functions have"
      } no worker after ${(waitedMs / 1000).toFixed(1)} s:\n${
        lines.join("\n")
      }\nOr run everything in-process with --local.`,
    );
    this.name = "WorkersMissingError";
    this.missing = missing;
  }
}

/** Resolves with each queue's consumer count once all have one; else throws. */
export async function waitForWorkers(
  broker: Broker,
  needed: NeededWorker[],
  options: WaitForWorkersOptions,
): Promise<Map<string, number>> {
  const started = Date.now();
  let told = false;
  while (true) {
    const consumers = new Map<string, number>();
    const missing: NeededWorker[] = [];
    for (const worker of needed) {
      const info = await broker.inspectQueue(worker.queue);
      consumers.set(worker.queue, info?.consumers ?? 0);
      if (!info || info.consumers === 0) missing.push(worker);
    }
    if (missing.length === 0) return consumers;
    const waited = Date.now() - started;
    if (waited >= options.timeoutMs) throw new WorkersMissingError(missing, waited);
    if (!told) {
      options.onWaiting?.(missing);
      told = true;
    }
    await new Promise((resolve) =>
      setTimeout(resolve, Math.min(options.intervalMs ?? 250, options.timeoutMs - waited))
    );
  }
}

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

/** How a broadcast is made and its answers collected (a `TaskClient`'s). */
export interface Broadcast {
  /** The broker user of the caller's connection. */
  readonly user: string;
  /**
   * Publishes the control message `build` makes for a fresh correlation id
   * and a reply address, and collects every answer carrying that id until
   * `timeoutMs` passes or `enough` says so. A missing control exchange is a
   * `TypeError`, as the broker's contract says.
   */
  broadcast(
    build: (correlationId: string, replyTo: string) => Message,
    options: { timeoutMs: number; enough?: (answers: Message[]) => boolean },
  ): Promise<Message[]>;
}

/**
 * Pings every worker and gathers the answers: duplicates and invalid answers
 * dropped, answers from unexpected senders counted. None when the control
 * exchange does not exist.
 */
export async function pingWorkers(
  caller: Broadcast,
  options: PingWorkersOptions = {},
): Promise<PingResult> {
  const { expected } = options;
  const userOf = options.userOf ?? ((fn: string) => fn);
  let answers: Message[];
  try {
    answers = await caller.broadcast(encodePing, {
      timeoutMs: options.timeoutMs ?? 1000,
      enough: expected && expected.size > 0
        ? (answers) => covers(parseAnswers(answers, caller.user, userOf).workers, expected)
        : undefined,
    });
  } catch (error) {
    // The broker's contract: publishing to a missing exchange is a TypeError.
    // Every worker declares the exchange: without it, no worker ever ran.
    if (error instanceof TypeError) return { workers: [], unexpected: 0 };
    throw error;
  }
  const result = parseAnswers(answers, caller.user, userOf);
  result.workers.sort((a, b) => a.queue.localeCompare(b.queue) || a.worker.localeCompare(b.worker));
  return result;
}
