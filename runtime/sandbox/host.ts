/**
 * The messages between the worker runtime and a function's sandbox (a Web
 * Worker with no permissions). Both sides send them in batches, one
 * `postMessage` per turn of the event loop, so that a burst of tasks costs a
 * few messages instead of two per task.
 *
 * @module
 */

import type { LogLevel } from "../../core/log.ts";
import type { HandlerOutcome, HandlerRun } from "../handler_runner.ts";

/** From the runtime to the sandbox. */
export type ToSandbox =
  | { k: "run"; run: HandlerRun }
  | { k: "abort"; id: number; message: string }
  | { k: "ping"; n: number };

/** From the sandbox to the runtime. Untrusted: the runtime checks each before use. */
export type FromSandbox =
  | {
    k: "ready";
    info: {
      name: unknown;
      queue: unknown;
      retry: unknown;
      timeoutMs: unknown;
      allowedSenders: unknown;
      celeryNames: unknown;
    };
  }
  | { k: "failed"; message: string }
  | { k: "done"; id: number; outcome: HandlerOutcome }
  | { k: "log"; id: number; level: LogLevel; msg: string; fields?: Record<string, unknown> }
  | { k: "pong"; n: number }
  | { k: "stray"; message: string }
  /**
   * Text the function wrote to its console, `Deno.stdout` or `Deno.stderr`,
   * one line each; `id` is the run it wrote it in, if any.
   */
  | { k: "out"; id?: number; stream: OutputStream; text: string }
  /** Lines the sandbox dropped over its output budget, and their characters. */
  | { k: "dropped"; lines: number; chars: number };

/** Where a function meant its text to go. */
export type OutputStream = "stdout" | "stderr";

/**
 * Gathers messages and posts them together at the end of the current turn.
 * @param post Sends one batch.
 */
export function batcher<T>(post: (batch: T[]) => void): (message: T) => void {
  let batch: T[] = [];
  const flush = () => {
    const sending = batch;
    batch = [];
    post(sending);
  };
  return (message) => {
    if (batch.push(message) === 1) queueMicrotask(flush);
  };
}
