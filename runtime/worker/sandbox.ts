/**
 * A function's sandbox, seen from the worker runtime: the function's module
 * runs in a Web Worker that Deno starts with no permissions at all (no
 * files, variables, network, subprocesses or system information), so
 * neither its top-level code nor its handler can reach the runtime's broker
 * connection, credentials or files. Tasks go in and outcomes come out as
 * batched messages.
 *
 * The runtime enforces each attempt's time limit from outside: past it the
 * attempt fails at once, and a sandbox that then does not answer within a
 * second (a handler that never yields) is terminated and started again.
 *
 * @module
 */

import {
  boundText,
  DEADLINE_EXCEEDED,
  MAX_ERROR_MESSAGE_CHARS,
} from "../../core/contract/message.ts";
import type { FunctionInfo } from "../define_function.ts";
import { DeadlineTimer } from "../../core/deadline_timer.ts";
import { LOG_LEVELS, type Logger, type LogLevel } from "../../core/log.ts";
import type { HandlerOutcome, HandlerRun } from "./run_handler.ts";
import type { AttemptLimit, HandlerRunner } from "./runner.ts";
import { Host, SandboxError, waitReady } from "./sandbox_loader.ts";
import type { FromSandbox } from "./sandbox_protocol.ts";

export { SandboxError };

/** Options for {@linkcode startSandbox}. */
export interface StartSandboxOptions {
  /** The function's module: its default export is the function. */
  module: URL;
  /** Names the Web Worker, for Deno's error messages. */
  name?: string;
  /** Where the sandbox's own troubles are reported (stray errors, restarts). */
  log: Logger;
  /**
   * Give up when the module has not loaded within this time.
   * @default {15_000}
   */
  readyTimeoutMs?: number;
  /**
   * How long a sandbox has to answer after an attempt timed out before it
   * is judged stuck and started again.
   * @default {1000}
   */
  stuckAfterMs?: number;
}

/** Longest log message and fields a handler may write per line, in characters. */
const MAX_LOG_MESSAGE = 1024;
const MAX_LOG_FIELDS = 4096;

interface Pending {
  run: HandlerRun;
  /** The sandbox it was sent to, once sent. */
  host?: Host;
  resolve: (outcome: HandlerOutcome) => void;
  log: () => Logger;
  limit: AttemptLimit;
  /** When the attempt times out, in `performance.now()` milliseconds. */
  due: number;
}

function boundFields(fields: unknown): Record<string, unknown> | undefined {
  if (typeof fields !== "object" || fields === null) return undefined;
  let text: string;
  try {
    text = JSON.stringify(fields);
  } catch {
    return { fields_dropped: "not JSON" };
  }
  if (text.length > MAX_LOG_FIELDS) return { fields_dropped: `${text.length} characters` };
  return fields as Record<string, unknown>;
}

/**
 * A {@linkcode HandlerRunner} backed by a sandbox; see the module
 * documentation.
 */
export class Sandbox implements HandlerRunner {
  readonly info: FunctionInfo;
  readonly #options: StartSandboxOptions;
  #host: Host;
  readonly #pending = new Map<number, Pending>();
  #pingsSent = 0;
  #pingsAnswered = 0;
  #restarting: Promise<void> | undefined;
  /** Set while a sandbox that let an attempt time out has not answered yet: new runs wait. */
  #suspect: { promise: Promise<void>; resolve: () => void } | undefined;
  #closed = false;
  /** Attempts given up on whose handler may still be running. */
  #abandoned = 0;
  readonly #deadlines = new DeadlineTimer((now) => this.#timeOut(now));

  private constructor(options: StartSandboxOptions, host: Host, info: FunctionInfo) {
    this.#options = options;
    this.#host = host;
    this.info = info;
    this.#attach(host);
  }

  /** Loads the function into a new sandbox and resolves once it is ready. */
  static async start(options: StartSandboxOptions): Promise<Sandbox> {
    const host = new Host(options.module, options.name ?? "function");
    try {
      const info = await waitReady(host, options.module, options.readyTimeoutMs ?? 15_000);
      return new Sandbox(options, host, info);
    } catch (error) {
      host.terminate();
      throw error;
    }
  }

  #attach(host: Host): void {
    host.onMessage = (message) => this.#receive(host, message);
    host.onFailure = (message) => {
      this.#options.log.error("The function's sandbox failed; starting it again", {
        error: boundText(message, MAX_ERROR_MESSAGE_CHARS),
      });
      this.#restart(`its sandbox failed: ${message}`);
    };
  }

  #receive(host: Host, message: FromSandbox): void {
    if (host !== this.#host) return;
    switch (message.k) {
      case "done": {
        const pending = this.#pending.get(message.id);
        if (!pending) {
          // An attempt given up on finished after all.
          if (this.#abandoned > 0) this.#abandoned--;
          return;
        }
        this.#finish(pending, checkOutcome(message.outcome));
        return;
      }
      case "log": {
        const pending = this.#pending.get(message.id);
        const level = LOG_LEVELS.includes(message.level) ? message.level : "info";
        (pending?.log() ?? this.#options.log)[level as LogLevel](
          boundText(String(message.msg), MAX_LOG_MESSAGE),
          boundFields(message.fields),
        );
        return;
      }
      case "pong":
        if (typeof message.n === "number") {
          this.#pingsAnswered = Math.max(this.#pingsAnswered, message.n);
          if (this.#pingsAnswered >= this.#pingsSent) this.#clearSuspicion();
        }
        return;
      case "stray":
        this.#options.log.warn("The function left an error unhandled", {
          error: boundText(String(message.message), MAX_ERROR_MESSAGE_CHARS),
        });
        return;
    }
  }

  #finish(pending: Pending, outcome: HandlerOutcome): void {
    this.#pending.delete(pending.run.id);
    if (this.#pending.size === 0) this.#deadlines.cancel();
    pending.resolve(outcome);
  }

  /** Times out every attempt past its limit; returns the next limit. */
  #timeOut(now: number): number {
    let next = Infinity;
    for (const pending of [...this.#pending.values()]) {
      if (pending.due <= now) this.#timeout(pending, pending.limit);
      else next = Math.min(next, pending.due);
    }
    return next;
  }

  run(run: HandlerRun, limit: AttemptLimit, log: () => Logger): Promise<HandlerOutcome> {
    if (this.#closed) {
      return Promise.resolve({
        ok: false,
        retryable: true,
        requeue: true,
        error: { type: "WorkerStopping", message: "The worker is stopping" },
      });
    }
    return new Promise((resolve) => {
      // The function's own time limit counts from when the handler gets the
      // task: not while it waits for a sandbox that is starting again. The
      // caller's deadline counts from now, as the caller's clock does.
      const due = limit.type === DEADLINE_EXCEEDED ? performance.now() + limit.ms : Infinity;
      const pending: Pending = { run, resolve, log, limit, due };
      this.#pending.set(run.id, pending);
      if (due < Infinity) this.#deadlines.schedule(due);
      const wait = this.#restarting ?? this.#suspect?.promise;
      if (wait) wait.then(() => this.#send(pending));
      else this.#send(pending);
    });
  }

  #send(pending: Pending): void {
    if (this.#pending.get(pending.run.id) !== pending) return;
    pending.due = Math.min(pending.due, performance.now() + pending.limit.ms);
    this.#deadlines.schedule(pending.due);
    this.#host.send({ k: "run", run: pending.run });
  }

  #timeout(pending: Pending, limit: AttemptLimit): void {
    if (this.#pending.get(pending.run.id) !== pending) return;
    this.#host.send({ k: "abort", id: pending.run.id, message: limit.message });
    this.#abandoned++;
    this.#finish(pending, {
      ok: false,
      retryable: true,
      error: { type: limit.type, message: limit.message },
    });
    this.#checkAlive();
  }

  /**
   * Pings the sandbox after an attempt was given up on. A sandbox whose
   * thread is held by a handler that never yields cannot answer: it is
   * started again. So is one that holds more abandoned handlers than it has
   * ever run at once, each of which may hold memory.
   */
  #checkAlive(): void {
    const host = this.#host;
    const asked = ++this.#pingsSent;
    if (!this.#suspect) {
      let resolve!: () => void;
      const promise = new Promise<void>((done) => resolve = done);
      this.#suspect = { promise, resolve };
    }
    host.send({ k: "ping", n: asked });
    setTimeout(() => {
      if (host !== this.#host || this.#closed) return;
      if (this.#pingsAnswered < asked) {
        this.#options.log.error(
          "The function's sandbox did not answer after an attempt timed out (a handler that never yields); starting it again",
          {},
        );
        this.#restart("its sandbox was stuck in another task's handler");
      } else if (this.#abandoned > Math.max(8, this.#pending.size * 2)) {
        this.#options.log.warn("Restarting the function's sandbox to free abandoned handlers", {
          abandoned: this.#abandoned,
        });
        this.#restart("its sandbox was restarted to free handlers that ignored their signal");
      }
    }, this.#options.stuckAfterMs ?? 1000);
  }

  #clearSuspicion(): void {
    const suspect = this.#suspect;
    this.#suspect = undefined;
    suspect?.resolve();
  }

  #restart(reason: string): void {
    if (this.#restarting || this.#closed) return;
    const old = this.#host;
    old.terminate();
    this.#abandoned = 0;
    // The tasks still running there are not at fault: they go back to the
    // queue. Those not yet sent wait for the new sandbox.
    for (const pending of [...this.#pending.values()]) {
      if (pending.host !== old) continue;
      this.#finish(pending, {
        ok: false,
        retryable: true,
        requeue: true,
        error: { type: "WorkerRestarted", message: `Returned to the queue as ${reason}` },
      });
    }
    this.#restarting = (async () => {
      while (!this.#closed) {
        try {
          const host = new Host(this.#options.module, this.#options.name ?? "function");
          await waitReady(host, this.#options.module, this.#options.readyTimeoutMs ?? 15_000);
          this.#host = host;
          this.#pingsSent = this.#pingsAnswered = 0;
          this.#attach(host);
          return;
        } catch (error) {
          this.#options.log.error("Cannot start the function's sandbox again; retrying", {
            error: (error as Error).message,
          });
          await new Promise((resolve) => setTimeout(resolve, 1000));
        }
      }
    })().finally(() => {
      this.#restarting = undefined;
      this.#clearSuspicion();
    });
  }

  abortAll(reason: string): void {
    for (const id of this.#pending.keys()) this.#host.send({ k: "abort", id, message: reason });
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#clearSuspicion();
    await this.#restarting;
    this.#host.terminate();
    for (const pending of [...this.#pending.values()]) {
      this.#finish(pending, {
        ok: false,
        retryable: true,
        requeue: true,
        error: { type: "WorkerStopping", message: "The worker stopped" },
      });
    }
  }
}

/** What a sandbox reported as an outcome, checked: it is untrusted. */
function checkOutcome(outcome: unknown): HandlerOutcome {
  const o = outcome as Record<string, unknown> | null;
  if (o?.ok === true && typeof o.resultJson === "string") {
    return { ok: true, resultJson: o.resultJson };
  }
  const error = o?.error as Record<string, unknown> | undefined;
  if (o?.ok === false && typeof error?.type === "string" && typeof error.message === "string") {
    return {
      ok: false,
      retryable: o.retryable === true,
      error: {
        type: boundText(error.type, 64),
        message: boundText(error.message, MAX_ERROR_MESSAGE_CHARS),
      },
    };
  }
  return {
    ok: false,
    retryable: false,
    error: {
      type: "InvalidResult",
      message: "The function's sandbox sent an outcome of no known shape",
    },
  };
}

/** Loads a function into a sandbox; see {@linkcode Sandbox}. */
export function startSandbox(options: StartSandboxOptions): Promise<Sandbox> {
  return Sandbox.start(options);
}
