/**
 * The control protocol: a ping published to the control exchange, which
 * every live worker answers with who it is and what it has done.
 *
 * @module
 */

import { decodeJson } from "./json.ts";
import {
  CONTENT_TYPE,
  describeValue,
  isPlainObject,
  type Message,
  type Parsed,
  refuse,
} from "./message.ts";

/** AMQP `type` property of a control request such as a ping. */
export const CONTROL_MESSAGE_TYPE = "control.request";

/** AMQP `type` property of a worker's answer to a ping. */
export const WORKER_INFO_MESSAGE_TYPE = "control.worker_info";

/** Largest control message or answer accepted, in bytes; a larger one is ignored unread. */
export const MAX_CONTROL_BYTES = 64 * 1024;

/** Control requests a worker answers. */
export type ControlRequest = { kind: "ping" };

/** What a worker answers to a ping: who it is and what it has done since it started. */
export interface WorkerInfo {
  kind: "pong";
  /** The worker's id, as in replies and logs. */
  worker: string;
  function: string;
  queue: string;
  /** When the worker process started. */
  started_at: string;
  uptime_ms: number;
  /** Handlers this worker runs at once. */
  concurrency: number;
  /** Tasks finished: succeeded + failed + rejected. */
  tasks_done: number;
  succeeded: number;
  failed: number;
  rejected: number;
  /** Failed attempts it scheduled for another try. */
  retried: number;
  /** Tasks whose handler is running now. */
  in_flight: number;
  /** Whether it publishes task events (`TASK_EVENTS=true`); absent from older workers. */
  events?: boolean;
}

const encoder = new TextEncoder();

/** Builds a ping: every worker that receives it answers on `replyTo`. */
export function encodePing(correlationId: string, replyTo: string): Message {
  return {
    body: encoder.encode(JSON.stringify({ kind: "ping" } satisfies ControlRequest)),
    properties: { contentType: CONTENT_TYPE, correlationId, replyTo, type: CONTROL_MESSAGE_TYPE },
  };
}

/** Parses a control request a worker received. */
export function parseControlRequest(body: Uint8Array): Parsed<ControlRequest> {
  const json = decodeJson(body, { what: "the control request", maxBytes: MAX_CONTROL_BYTES });
  if (!json.ok) return json;
  const request = json.value;
  if (!isPlainObject(request) || request.kind !== "ping") {
    return refuse(
      "InvalidRequest",
      `Cannot accept the control request as its kind is ${
        describeValue(isPlainObject(request) ? request.kind : request)
      }: send {"kind": "ping"}`,
    );
  }
  return { ok: true, value: { kind: "ping" } };
}

/** Builds a worker's answer to a ping. */
export function encodeWorkerInfo(info: WorkerInfo, correlationId: string | undefined): Message {
  return {
    body: encoder.encode(JSON.stringify(info)),
    properties: { contentType: CONTENT_TYPE, correlationId, type: WORKER_INFO_MESSAGE_TYPE },
  };
}

const WORKER_INFO_COUNTS: (keyof WorkerInfo)[] = [
  "uptime_ms",
  "concurrency",
  "tasks_done",
  "succeeded",
  "failed",
  "rejected",
  "retried",
  "in_flight",
];

/** Parses a worker's answer to a ping; an invalid one says which field is wrong. */
export function parseWorkerInfo(body: Uint8Array): Parsed<WorkerInfo> {
  const json = decodeJson(body, { what: "the worker info", maxBytes: MAX_CONTROL_BYTES });
  if (!json.ok) return json;
  const info = json.value;
  if (!isPlainObject(info) || info.kind !== "pong") {
    return refuse("InvalidReply", "Cannot accept the worker info as its kind is not pong");
  }
  for (const key of ["worker", "function", "queue", "started_at"]) {
    if (typeof info[key] !== "string") {
      return refuse(
        "InvalidReply",
        `Cannot accept the worker info as '${key}' is ${describeValue(info[key])}`,
      );
    }
  }
  for (const key of WORKER_INFO_COUNTS) {
    const value = info[key];
    if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
      return refuse(
        "InvalidReply",
        `Cannot accept the worker info as '${key}' is ${describeValue(value)}`,
      );
    }
  }
  return { ok: true, value: info as unknown as WorkerInfo };
}
