/**
 * Where a function's sandbox runs, as `sandbox.ts` sees it: a
 * {@linkcode SandboxHost} (a Web Worker in this process, `thread_host.ts`,
 * or in a process of its own, `process_host.ts`), the messages each way,
 * and the wait for a new sandbox to say which function it holds. Both sides
 * send their messages in batches, one `postMessage` per turn of the event
 * loop, so that a burst of tasks costs a few messages instead of two per
 * task; a sandbox's own process relays them over its standard input and
 * output, one JSON text a line (`relay.ts`).
 *
 * @module
 */

import { boundText, MAX_ERROR_MESSAGE_CHARS } from "../../core/contract/message.ts";
import type { LogLevel } from "../../core/log.ts";
import type { HandlerOutcome, HandlerRun } from "../attempt.ts";
import { checkFunctionInfo, type FunctionInfo, type RetryPolicy } from "../define_function.ts";

/** The sandbox cannot be made: Deno was started without what it needs, or the module fails. */
export class SandboxError extends Error {
  /** @param message What failed and how to fix it. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "SandboxError";
  }
}

/**
 * Where a function's sandbox runs, as `sandbox.ts` drives it; replaced when
 * it gets stuck or fails.
 */
export interface SandboxHost {
  /** Queues a message for the sandbox; messages of one turn go together. */
  readonly send: (message: ToSandbox) => void;
  /** Each message of the sandbox, unchecked: the receiver checks it. */
  onMessage: (message: FromSandbox) => void;
  /** The sandbox ended or cannot go on; `message` says why. */
  onFailure: (message: string) => void;
  /** Ends the sandbox at once, whatever it is doing; resolves once it has ended. */
  terminate(): Promise<void>;
}

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
  /**
   * Every run of the last batch has started (run to its first `await`): the
   * next batch may come; `ms` is the longest any of them took to start.
   */
  | { k: "took"; ms: number }
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

/** What the parent says first. */
export interface RelayStart {
  /** Starts each line this process sends. */
  word: string;
  /** The function's module. */
  module: string;
  /** Names the Web Worker. */
  name: string;
}

/** A message of the relay itself: its Web Worker failed. */
export interface RelayFailure {
  k: "failure";
  message: string;
}

/**
 * Longest message sent back, in characters: a result longer than this is
 * replaced by an error, as far too large to reply with anyway.
 */
export const MAX_RELAYED_CHARS = 16 * 1024 * 1024;

/**
 * Resolves with what the function in `host` says of itself, checked, once
 * its module has loaded; rejects with a {@linkcode SandboxError} when it
 * fails to load or takes longer than `timeoutMs`. What else the sandbox
 * sends meanwhile (what its module's top-level code prints) goes to `other`.
 */
export function waitReady(
  host: SandboxHost,
  module: URL,
  timeoutMs: number,
  other: (message: FromSandbox) => void = () => {},
): Promise<FunctionInfo> {
  return new Promise((resolve, reject) => {
    const where = module.protocol === "file:" ? module.pathname : module.href;
    const timer = setTimeout(() => {
      reject(
        new SandboxError(
          `Cannot load the function from ${where} as it did not finish loading within ${timeoutMs} ms: check its top-level code`,
        ),
      );
    }, timeoutMs);
    const fail = (message: string) => {
      clearTimeout(timer);
      reject(
        new SandboxError(
          `Cannot load the function from ${where}: ${boundText(message, MAX_ERROR_MESSAGE_CHARS)}`,
        ),
      );
    };
    host.onFailure = fail;
    host.onMessage = (message) => {
      // Before it is ready, an error the sandbox reports is its module's.
      if (message.k === "failed" || message.k === "stray") return fail(String(message.message));
      if (message.k !== "ready") return other(message);
      clearTimeout(timer);
      try {
        const info = message.info as unknown as FunctionInfo;
        resolve(checkFunctionInfo({ ...info, retry: info.retry as RetryPolicy }));
      } catch (error) {
        fail((error as Error).message);
      }
    };
  });
}
