/**
 * Fans a scenario's tasks out at once and judges each reply against what
 * the scenario expects.
 *
 * @module
 */

import { isDeepStrictEqual } from "node:util";
import type { TaskProgress, TaskReply } from "../core/contract/mod.ts";
import type { TraceIds } from "../core/trace_context.ts";
import type { CallOutcome } from "../client/mod.ts";
import { fanOut, type TaskClient } from "../client/task_client.ts";
import { MAX_STREAM_WINDOW, type StreamCall, streamCalls } from "../client/stream.ts";
import type { TaskSpec } from "./config/load_config.ts";

/** A task's end: its reply (or none in time) and whether it met the expectation. */
export interface TaskOutcome {
  spec: TaskSpec;
  taskId: string;
  /** The reply's status, or `timeout` when none came in time. */
  status: "success" | "error" | "timeout";
  reply?: TaskReply;
  passed: boolean;
  /** Why the task did not pass. */
  problem?: string;
  /** From handing the request to the broker to the end of the call, in ms. */
  latencyMs: number;
  /** `performance.now()` when the request was sent. */
  sentAt: number;
  /** `Date.now()` when the request was sent, comparable with the workers' times. */
  sentWallMs: number;
  /** `Date.now()` when the reply came or the wait ended. */
  endedWallMs: number;
  /** The worker's progress events (started, retry), in arrival order. */
  progress: TaskProgress[];
  /** The call's trace and span ids, when tracing is on (`OTEL_DENO=true`). */
  trace?: TraceIds;
}

/** Callbacks while tasks run, for live status. */
export interface DispatchListener {
  /** The request reached the broker; `trace` holds its ids when tracing is on, else nothing. */
  onSent?(spec: TaskSpec, taskId: string, trace?: TraceIds): void;
  onProgress?(spec: TaskSpec, progress: TaskProgress): void;
  onDone?(outcome: TaskOutcome): void;
}

/** One listener that calls each of `listeners` in turn. */
export function combineListeners(...listeners: DispatchListener[]): DispatchListener {
  return {
    onSent: (spec, taskId, trace) => listeners.forEach((l) => l.onSent?.(spec, taskId, trace)),
    onProgress: (spec, progress) => listeners.forEach((l) => l.onProgress?.(spec, progress)),
    onDone: (outcome) => listeners.forEach((l) => l.onDone?.(outcome)),
  };
}

function quote(value: unknown): string {
  return JSON.stringify(value) ?? "undefined";
}

/** Decides whether a call's outcome meets the task's expectation. */
export function judge(
  spec: TaskSpec,
  outcome: CallOutcome,
  progress: TaskProgress[] = [],
): TaskOutcome {
  const base = {
    spec,
    taskId: outcome.taskId,
    latencyMs: outcome.endedAt - outcome.sentAt,
    sentAt: outcome.sentAt,
    sentWallMs: outcome.sentWallMs,
    endedWallMs: outcome.endedWallMs,
    progress,
    ...(outcome.trace && { trace: outcome.trace }),
  };
  if (outcome.kind === "timeout") {
    return {
      ...base,
      status: "timeout",
      passed: false,
      problem:
        `TIMEOUT: no reply within ${spec.timeoutMs} ms: check the worker's logs, or raise timeout_ms`,
    };
  }
  const { reply } = outcome;
  const { expect } = spec;
  let problem: string | undefined;
  if (reply.status !== expect.status) {
    problem = reply.status === "error"
      ? `expected success, got ${reply.error?.type}: ${reply.error?.message}`
      : `expected an error, got success with result ${quote(reply.result)}`;
  } else if ("result" in expect && !isDeepStrictEqual(expect.result, reply.result)) {
    problem = `expected result ${quote(expect.result)}, got ${quote(reply.result)}`;
  } else if (expect.errorType !== undefined && reply.error?.type !== expect.errorType) {
    problem = `expected error type ${expect.errorType}, got ${reply.error?.type}`;
  }
  return { ...base, status: reply.status, reply, passed: problem === undefined, problem };
}

// Shared by every outcome without progress events: nothing is ever added to it.
const NO_PROGRESS: TaskProgress[] = Object.freeze([]) as unknown as TaskProgress[];

/** Options for {@linkcode dispatchAll} and {@linkcode dispatchEach}. */
export interface DispatchOptions {
  /**
   * Ask workers for progress events, for live status and a timeline of every
   * attempt. They double the messages back, so they are off unless wanted;
   * without them an outcome still has its last attempt, from the reply.
   * @default {false}
   */
  progress?: boolean;
  /**
   * Tasks in flight at once (`client/stream.ts`): the next is sent as one
   * ends, and each task's timeout counts from when it is sent.
   * @default {every task at once}
   */
  window?: number;
}

/** A task's call, with where its progress events go. */
function callOf(
  spec: TaskSpec,
  listener: DispatchListener,
  options: DispatchOptions,
): StreamCall<TaskProgress[]> {
  const taskId = crypto.randomUUID();
  const progress: TaskProgress[] = options.progress ? [] : NO_PROGRESS;
  return {
    function: spec.task,
    payload: spec.payload,
    taskId,
    timeoutMs: spec.timeoutMs,
    retry: spec.retry,
    onSent: listener.onSent && ((trace) => listener.onSent!(spec, taskId, trace)),
    onProgress: options.progress
      ? (event) => {
        progress.push(event);
        listener.onProgress?.(spec, event);
      }
      : undefined,
    context: progress,
  };
}

/**
 * Sends every task at once and waits for all of them with `Promise.all`
 * (through `fanOut`, which puts the first on the wire while the rest are
 * made), or `window` at a time (see {@linkcode dispatchEach}).
 * Rejects only when the broker fails; timeouts and failed tasks are outcomes.
 */
export async function dispatchAll(
  client: Pick<TaskClient, "request">,
  tasks: TaskSpec[],
  listener: DispatchListener = {},
  options: DispatchOptions = {},
): Promise<TaskOutcome[]> {
  if (options.window === undefined) {
    return await fanOut(tasks, async (spec) => {
      const { function: fn, payload, context, ...call } = callOf(spec, listener, options);
      const result = judge(spec, await client.request(fn, payload, call), context);
      listener.onDone?.(result);
      return result;
    });
  }
  const outcomes: TaskOutcome[] = new Array(tasks.length);
  await dispatchEach(
    client,
    tasks,
    (outcome, index) => outcomes[index] = outcome,
    listener,
    options,
  );
  return outcomes;
}

/**
 * Sends the tasks `window` at a time (default: all at once), the next as
 * one ends, and hands each outcome to `onOutcome` with its task's index as
 * it ends: what a run of any size keeps is up to `onOutcome`. Rejects only
 * when the broker fails.
 */
export async function dispatchEach(
  client: Pick<TaskClient, "request">,
  tasks: TaskSpec[],
  onOutcome: (outcome: TaskOutcome, index: number) => void,
  listener: DispatchListener = {},
  options: DispatchOptions = {},
): Promise<void> {
  const calls = function* () {
    for (const spec of tasks) yield callOf(spec, listener, options);
  };
  const window = Math.max(
    1,
    Math.min(options.window ?? tasks.length, tasks.length, MAX_STREAM_WINDOW),
  );
  for await (const { call, index, outcome } of streamCalls(client, calls(), { window })) {
    const result = judge(tasks[index], outcome, call.context);
    listener.onDone?.(result);
    onOutcome(result, index);
  }
}
