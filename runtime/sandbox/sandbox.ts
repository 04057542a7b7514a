/**
 * A function's sandbox, seen from the worker runtime: the function's module
 * runs in a Web Worker that Deno starts with no permissions at all (no
 * files, variables, network, subprocesses or system information), so
 * neither its top-level code nor its handler can reach the runtime's broker
 * connection, credentials or files. Tasks go in and outcomes come out as
 * batched messages.
 *
 * Deno checks a module specifier written out in the code (a static import,
 * or `import("../x.txt", { with: { type: "text" } })`) against what the
 * process that starts the Web Worker may read, not against the Worker's own
 * permissions. So the sandbox runs in this process only when it may read no
 * more than code (a worker process, `--allow-read=functions,runtime,core`),
 * and in a process of its own that may read only the function's folder and
 * the runtime otherwise (`isolation: "process"`, `process_host.ts`: the
 * embedded mode, inside tools that read every file).
 *
 * What the function writes to its console comes out as log lines of the
 * runtime, attributed to the function and the task (`source: "function"`),
 * cut at {@linkcode MAX_OUTPUT_LINE_CHARS} and within a budget per second
 * (`output_budget.ts`); its own log lines cannot replace the fields the
 * runtime puts on every line.
 *
 * The runtime enforces each attempt's time limit from outside: past it the
 * attempt fails at once, and a sandbox that then does not answer within a
 * second (a handler that never yields) is terminated and started again; the
 * other tasks it was running go back to the queue without using an attempt,
 * and no delivery limit counts that. A sandbox that fails (its Web Worker
 * or its process ends) is started again too, and the tasks it was running
 * go back as failed deliveries, as when a worker dies: one of them may have
 * caused it, and the delivery limit ends a task that always does.
 *
 * @module
 */

import {
  boundText,
  DEADLINE_EXCEEDED,
  MAX_ERROR_MESSAGE_CHARS,
} from "../../core/contract/message.ts";
import { DeadlineTimer } from "../../core/deadline_timer.ts";
import { LOG_LEVELS, type Logger, type LogLevel } from "../../core/log.ts";
import type { AttemptLimit, HandlerOutcome, HandlerRun } from "../attempt.ts";
import type { FunctionInfo } from "../define_function.ts";
import { cancelledOutcome, type HandlerRunner, type HeldEvent } from "../handler_runner.ts";
import { type FromSandbox, SandboxError, type SandboxHost, waitReady } from "./host.ts";
import { MAX_OUTPUT_LINE_CHARS, OutputBudget } from "./output_budget.ts";
import { ProcessHost } from "./process_host.ts";
import { ThreadHost } from "./thread_host.ts";

export { MAX_OUTPUT_LINE_CHARS, SandboxError };

/**
 * Where a sandbox's Web Worker runs: `thread`, in this process (which must
 * then read no more than code); `process`, in a process of its own that may
 * read only the function's folder and the runtime.
 */
export type SandboxIsolation = "thread" | "process";

/** Options for {@linkcode startSandbox}. */
export interface StartSandboxOptions {
  /** The function's module: its default export is the function. */
  module: URL;
  /** Names the Web Worker, for Deno's error messages. */
  name?: string;
  /**
   * Where the sandbox's own troubles are reported (stray errors, restarts),
   * and what the function writes outside a task.
   */
  log: Logger;
  /**
   * Where the Web Worker runs; see {@linkcode SandboxIsolation}.
   * @default {"thread"}
   */
  isolation?: SandboxIsolation;
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
  /**
   * How long a task may wait for the sandbox to take the batch sent before
   * it, before the sandbox counts as held (see {@linkcode Sandbox.watchHeld}).
   * @default {HELD_AFTER_MS}
   */
  heldAfterMs?: number;
}

/**
 * How long a task may wait for the sandbox to take the batch sent before
 * it, before the sandbox counts as held (a handler doing CPU-bound work that
 * does not yield, or a machine too busy to run the sandbox's thread).
 * Starting a batch of a thousand no-op tasks takes a few ms.
 */
export const HELD_AFTER_MS = 50;

/** Messages kept from a module as it loads, before its sandbox can log them. */
const MAX_EARLY_MESSAGES = 1000;

/** Longest log message and fields a handler may write per line, in characters. */
const MAX_LOG_MESSAGE = 1024;
const MAX_LOG_FIELDS = 4096;

/**
 * Fields the runtime puts on a function's lines, which the function's own
 * fields may not replace: theirs are renamed with a `fn_` prefix.
 */
const RUNTIME_FIELDS = new Set([
  "function",
  "queue",
  "worker",
  "task_id",
  "attempt",
  "trace_id",
  "span_id",
  "protocol",
  "source",
  "stream",
  "text",
]);

interface Pending {
  run: HandlerRun;
  /** The sandbox it was sent to, once sent. */
  host?: SandboxHost;
  resolve: (outcome: HandlerOutcome) => void;
  log: () => Logger;
  limit: AttemptLimit;
  /** When the attempt times out, in `performance.now()` milliseconds. */
  due: number;
}

/** A function's log fields, bounded, marked as the function's, never replacing the runtime's. */
function functionFields(fields: unknown): Record<string, unknown> {
  const own: Record<string, unknown> = { source: "function" };
  if (typeof fields !== "object" || fields === null) return own;
  let text: string;
  try {
    text = JSON.stringify(fields);
  } catch {
    return { ...own, fields_dropped: "not JSON" };
  }
  if (text.length > MAX_LOG_FIELDS) return { ...own, fields_dropped: `${text.length} characters` };
  // Plain data again: no getter or prototype of the function's survives.
  for (const [key, value] of Object.entries(JSON.parse(text) as Record<string, unknown>)) {
    own[RUNTIME_FIELDS.has(key) ? `fn_${key}` : key] = value;
  }
  return own;
}

/**
 * A {@linkcode HandlerRunner} backed by a sandbox; see the module
 * documentation.
 */
export class Sandbox implements HandlerRunner {
  readonly info: FunctionInfo;
  readonly #options: StartSandboxOptions;
  #host: SandboxHost;
  readonly #pending = new Map<number, Pending>();
  #pingsSent = 0;
  #pingsAnswered = 0;
  #restarting: Promise<void> | undefined;
  /** Set while a sandbox that let an attempt time out has not answered yet: new runs wait. */
  #suspect: { promise: Promise<void>; resolve: () => void } | undefined;
  #closed = false;
  /** Attempts given up on whose handler may still be running. */
  #abandoned = 0;
  /** Told of each attempt that ends, while `close()` waits for them. */
  #onFinish: (() => void) | undefined;
  readonly #deadlines = new DeadlineTimer((now) => this.#timeOut(now));
  readonly #budget: OutputBudget;
  /**
   * Attempts to send in this turn's batch, and those waiting for the sandbox
   * to start the batch before theirs: one batch is with the sandbox at a
   * time, so that a handler holding its thread holds no more tasks than it
   * had taken (see `returnQueued()`).
   */
  #outgoing: Pending[] = [];
  #queued: Pending[] = [];
  /** When the batch the sandbox has not started yet was sent (`performance.now()`). */
  #batchSentAt: number | undefined;
  /** When the first of `#queued` began to wait. */
  #waitingSince: number | undefined;
  #batches = 0;
  #held = false;
  #heldTimer: ReturnType<typeof setTimeout> | undefined;
  #onHeld: ((event: HeldEvent) => void) | undefined;

  private constructor(options: StartSandboxOptions, host: SandboxHost, info: FunctionInfo) {
    this.#options = options;
    this.#host = host;
    this.info = info;
    this.#budget = new OutputBudget((dropped) =>
      options.log.warn(
        "The function wrote more than its output budget; lines were dropped",
        { dropped_lines: dropped.lines, dropped_chars: dropped.chars },
      )
    );
    this.#attach(host);
  }

  /** Loads the function into a new sandbox and resolves once it is ready. */
  static async start(options: StartSandboxOptions): Promise<Sandbox> {
    const host = newHost(options);
    // What the module prints as it loads, logged once the sandbox exists.
    const early: FromSandbox[] = [];
    try {
      const info = await waitReady(
        host,
        options.module,
        options.readyTimeoutMs ?? 15_000,
        (message) => early.length < MAX_EARLY_MESSAGES && early.push(message),
      );
      const sandbox = new Sandbox(options, host, info);
      for (const message of early) sandbox.#output(message);
      return sandbox;
    } catch (error) {
      await host.terminate();
      throw error;
    }
  }

  #attach(host: SandboxHost): void {
    host.onMessage = (message) => this.#receive(host, message);
    host.onFailure = (message) => {
      this.#options.log.error("The function's sandbox failed; starting it again", {
        error: boundText(message, MAX_ERROR_MESSAGE_CHARS),
      });
      this.#restart(`its sandbox failed: ${message}`, "failed_delivery");
    };
  }

  #receive(host: SandboxHost, message: FromSandbox): void {
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
      case "log":
      case "out":
      case "dropped":
        return this.#output(message);
      case "took":
        return this.#took(message.ms);
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

  /** Logs what the function wrote, within its budget. */
  #output(message: FromSandbox): void {
    switch (message.k) {
      case "log": {
        const msg = boundText(String(message.msg), MAX_LOG_MESSAGE);
        if (!this.#budget.admit(msg.length)) return;
        const level = LOG_LEVELS.includes(message.level) ? message.level : "info";
        this.#logOf(message.id)[level as LogLevel](msg, functionFields(message.fields));
        return;
      }
      case "out": {
        const text = boundText(String(message.text), MAX_OUTPUT_LINE_CHARS);
        if (!this.#budget.admit(text.length)) return;
        const stream = message.stream === "stderr" ? "stderr" : "stdout";
        this.#logOf(message.id)[stream === "stderr" ? "warn" : "info"](
          "Function output",
          { source: "function", stream, text },
        );
        return;
      }
      case "dropped": {
        const count = (n: unknown) =>
          Number.isSafeInteger(n) && (n as number) > 0 ? n as number : 0;
        const lines = count(message.lines);
        if (lines > 0) this.#budget.drop(lines, count(message.chars));
        return;
      }
    }
  }

  /** The logger of the attempt `id` names, or the sandbox's own. */
  #logOf(id: unknown): Logger {
    const pending = typeof id === "number" ? this.#pending.get(id) : undefined;
    return pending?.log() ?? this.#options.log;
  }

  #finish(pending: Pending, outcome: HandlerOutcome): void {
    this.#pending.delete(pending.run.id);
    if (this.#pending.size === 0) this.#deadlines.cancel();
    pending.resolve(outcome);
    this.#onFinish?.();
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
        requeue: "hand_back",
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
      // Held back while the sandbox starts again or is suspected stuck.
      this.#send(pending);
    });
  }

  #send(pending: Pending): void {
    if (this.#pending.get(pending.run.id) !== pending) return;
    if (this.#batchSentAt !== undefined) {
      if (this.#queued.push(pending) === 1) this.#watchHeld();
      return;
    }
    if (this.#outgoing.push(pending) === 1) queueMicrotask(() => this.#sendBatch());
  }

  /** Sends this turn's attempts to the sandbox as one batch. */
  #sendBatch(): void {
    const batch = this.#outgoing;
    this.#outgoing = [];
    // A sandbox starting again, or suspected stuck, gets them once it answers.
    if (this.#restarting || this.#suspect) {
      this.#queued.push(...batch);
      return;
    }
    let sent = 0;
    for (const pending of batch) {
      if (this.#pending.get(pending.run.id) !== pending) continue;
      pending.due = Math.min(pending.due, performance.now() + pending.limit.ms);
      this.#deadlines.schedule(pending.due);
      pending.host = this.#host;
      this.#host.send({ k: "run", run: pending.run });
      sent++;
    }
    if (sent === 0) return;
    this.#batchSentAt = performance.now();
    this.#batches++;
  }

  /** Batches of tasks sent to the sandbox so far. */
  get batchesSent(): number {
    return this.#batches;
  }

  /** The sandbox started every task of the last batch: the next may go. */
  #took(handlerMs: unknown): void {
    this.#batchSentAt = undefined;
    this.#waitingSince = undefined;
    // What the sandbox says of itself only steers its own worker's window.
    const byHandler = typeof handlerMs === "number" &&
      handlerMs >= (this.#options.heldAfterMs ?? HELD_AFTER_MS) / 2;
    if (this.#held || byHandler) {
      this.#held = false;
      this.#onHeld?.({ held: false, byHandler });
    }
    this.#release();
  }

  /** Sends the attempts that waited for the last batch (or for a restart). */
  #release(): void {
    const queued = this.#queued;
    this.#queued = [];
    for (const pending of queued) this.#send(pending);
  }

  /** Tells the listener once a task has waited `heldAfterMs` for the sandbox to take the batch before it. */
  #watchHeld(): void {
    if (this.#onHeld === undefined || this.#held) return;
    this.#waitingSince ??= performance.now();
    if (this.#heldTimer !== undefined) return;
    const heldAfter = this.#options.heldAfterMs ?? HELD_AFTER_MS;
    const check = () => {
      this.#heldTimer = undefined;
      const since = this.#waitingSince;
      if (since === undefined || this.#queued.length === 0 || this.#held || this.#closed) return;
      const waited = performance.now() - since;
      if (waited < heldAfter) {
        this.#heldTimer = setTimeout(check, heldAfter - waited);
        return;
      }
      this.#held = true;
      this.#onHeld?.({ held: true });
    };
    this.#heldTimer = setTimeout(check, heldAfter);
  }

  /**
   * Tells `listener` when a task has waited `heldAfterMs` for the sandbox to
   * take the batch before it (a handler holds the sandbox's thread, or the
   * machine is too busy to run it), and when the sandbox took that batch,
   * or any batch one of whose handlers held it half as long; see
   * {@linkcode HeldEvent}.
   */
  watchHeld(listener: (event: HeldEvent) => void): void {
    this.#onHeld = listener;
  }

  /**
   * Ends the attempts not sent to the sandbox yet, each as handed back
   * (`requeue: "hand_back"`): they wait for a sandbox that a handler holds,
   * and another replica may run them now. Returns how many.
   */
  returnQueued(): number {
    const waiting = [...this.#queued, ...this.#outgoing];
    this.#queued = [];
    this.#outgoing = [];
    this.#waitingSince = undefined;
    let returned = 0;
    for (const pending of waiting) {
      if (this.#pending.get(pending.run.id) !== pending) continue;
      returned++;
      this.#finish(pending, {
        ok: false,
        retryable: true,
        requeue: "hand_back",
        error: {
          type: "SandboxBusy",
          message: "Returned to the queue as another task's handler holds its worker's sandbox",
        },
      });
    }
    return returned;
  }

  #timeout(pending: Pending, limit: AttemptLimit): void {
    this.#giveUp(pending, limit.message, {
      ok: false,
      retryable: true,
      error: { type: limit.type, message: limit.message },
    });
  }

  /**
   * Ends an attempt now with `outcome`: its handler's signal fires, and a
   * sandbox that then does not answer within `stuckAfterMs` (a handler that
   * never yields) is started again, its other tasks handed back.
   */
  #giveUp(pending: Pending, message: string, outcome: HandlerOutcome): void {
    if (this.#pending.get(pending.run.id) !== pending) return;
    if (pending.host !== this.#host) {
      // Not sent yet (it waits for a sandbox starting again): it never starts.
      this.#finish(pending, outcome);
      return;
    }
    this.#host.send({ k: "abort", id: pending.run.id, message });
    this.#abandoned++;
    this.#finish(pending, outcome);
    this.#checkAlive();
  }

  cancel(id: number, message: string): boolean {
    const pending = this.#pending.get(id);
    if (!pending) return false;
    this.#giveUp(pending, message, cancelledOutcome(message));
    return true;
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
        this.#restart("its sandbox was stuck in another task's handler", "hand_back");
      } else if (this.#abandoned > Math.max(8, this.#pending.size * 2)) {
        this.#options.log.warn("Restarting the function's sandbox to free abandoned handlers", {
          abandoned: this.#abandoned,
        });
        this.#restart(
          "its sandbox was restarted to free handlers that ignored their signal",
          "hand_back",
        );
      }
    }, this.#options.stuckAfterMs ?? 1000);
  }

  #clearSuspicion(): void {
    const suspect = this.#suspect;
    this.#suspect = undefined;
    suspect?.resolve();
    if (suspect && !this.#restarting) this.#release();
  }

  /**
   * Replaces the sandbox. The tasks still running there go back to the
   * queue as `requeue` says: handed back, when the restart is for another
   * task's hung handler; as failed deliveries, when the sandbox itself
   * failed, which any of them may have caused. Those not yet sent wait for
   * the new sandbox.
   */
  #restart(reason: string, requeue: "hand_back" | "failed_delivery"): void {
    if (this.#restarting || this.#closed) return;
    const old = this.#host;
    old.terminate();
    this.#abandoned = 0;
    // The batch the old sandbox had not started ends with it, below; a
    // handler that held it (stuck, or crashing it) is why it is replaced.
    this.#batchSentAt = undefined;
    this.#waitingSince = undefined;
    if (this.#held) {
      this.#held = false;
      this.#onHeld?.({ held: false, byHandler: true });
    }
    for (const pending of [...this.#pending.values()]) {
      if (pending.host !== old) continue;
      this.#finish(pending, {
        ok: false,
        retryable: true,
        requeue,
        error: { type: "WorkerRestarted", message: `Returned to the queue as ${reason}` },
      });
    }
    this.#restarting = (async () => {
      while (!this.#closed) {
        try {
          const host = newHost(this.#options);
          try {
            await waitReady(
              host,
              this.#options.module,
              this.#options.readyTimeoutMs ?? 15_000,
              (message) => this.#output(message),
            );
          } catch (error) {
            await host.terminate();
            throw error;
          }
          this.#host = host;
          this.#pingsSent = this.#pingsAnswered = 0;
          this.#attach(host);
          this.#restarting = undefined;
          this.#release();
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

  /**
   * Ends the sandbox. Attempts still running are aborted first and get up
   * to a second (`stuckAfterMs`) to end, so that a handler that heeds its
   * signal finishes, its last log lines included; then the sandbox is
   * terminated and what still runs goes back to the queue.
   */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#heldTimer);
    this.#clearSuspicion();
    await this.#restarting;
    const running = [...this.#pending.values()].filter((pending) => pending.host === this.#host);
    if (running.length > 0) {
      this.abortAll("The worker is stopping");
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#onFinish = () => {
          if (running.every((pending) => this.#pending.get(pending.run.id) !== pending)) resolve();
        };
        timer = setTimeout(resolve, this.#options.stuckAfterMs ?? 1000);
      });
      clearTimeout(timer);
      this.#onFinish = undefined;
    }
    await this.#host.terminate();
    this.#budget.flush();
    for (const pending of [...this.#pending.values()]) {
      this.#finish(pending, {
        ok: false,
        retryable: true,
        requeue: "hand_back",
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

function newHost(options: StartSandboxOptions): SandboxHost {
  const name = options.name ?? "function";
  return options.isolation === "process"
    ? new ProcessHost(options.module, name)
    : new ThreadHost(options.module, name);
}

/** Loads a function into a sandbox; see {@linkcode Sandbox}. */
export function startSandbox(options: StartSandboxOptions): Promise<Sandbox> {
  return Sandbox.start(options);
}
