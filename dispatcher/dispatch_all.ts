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

/** Options for {@linkcode dispatchAll}. */
export interface DispatchOptions {
  /**
   * Ask workers for progress events, for live status and a timeline of every
   * attempt. They double the messages back, so they are off unless wanted;
   * without them an outcome still has its last attempt, from the reply.
   * @default {false}
   */
  progress?: boolean;
}

/**
 * Sends every task at once and waits for all of them with `Promise.all`
 * (through `fanOut`, which puts the first on the wire while the rest are
 * made).
 * Rejects only when the broker fails; timeouts and failed tasks are outcomes.
 */
export function dispatchAll(
  client: Pick<TaskClient, "request">,
  tasks: TaskSpec[],
  listener: DispatchListener = {},
  options: DispatchOptions = {},
): Promise<TaskOutcome[]> {
  return fanOut(tasks, async (spec) => {
    const taskId = crypto.randomUUID();
    const progress: TaskProgress[] = options.progress ? [] : NO_PROGRESS;
    const outcome = await client.request(spec.task, spec.payload, {
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
    });
    const result = judge(spec, outcome, progress);
    listener.onDone?.(result);
    return result;
  });
}
