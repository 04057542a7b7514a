/**
 * How many deliveries a worker takes at once, and what it does while a
 * handler holds its sandbox's thread. A worker takes up to `prefetch`
 * deliveries and runs up to `concurrency` handlers at once: many short
 * tasks then cost no broker round trip each. But the sandbox runs every
 * handler on one thread, so a handler that does not yield (CPU-bound work)
 * holds every task the worker took, where another replica may be idle.
 *
 * The sandbox takes one batch of tasks at a time, so the tasks behind a
 * held batch wait in the worker. When one has waited `HELD_AFTER_MS` (the
 * runner's `watchHeld()`), the worker steps down: it stops consuming and
 * hands back every delivery its sandbox has not taken (a copy to the
 * queue, which no delivery limit counts). Once the sandbox takes the held
 * batch it says whether a handler held it (one ran half that long before
 * its first `await`): then the worker takes one delivery at a time, as a
 * worker with `CONCURRENCY=1` does, until {@linkcode STEP_UP_AFTER_MS} pass
 * without such a handler; else (the machine's load held the thread) it
 * takes its full window again at once. A function whose handlers always
 * hold their thread so stays at one task at a time, and its queue's tasks
 * go to whichever replica is free, as before the window existed.
 *
 * @module
 */

import type { Consumer } from "../../core/broker/broker.ts";
import type { Logger } from "../../core/log.ts";
import type { HandlerRunner } from "../handler_runner.ts";

/** How long a stepped-down worker waits without a held sandbox before taking its full window again. */
export const STEP_UP_AFTER_MS = 10_000;

/** Options for {@linkcode openStepDown}. */
export interface StepDownOptions {
  /** Runs the handlers, and says when one holds its thread (`watchHeld`). */
  runner: HandlerRunner;
  /** Opens the queue's consumer with this prefetch. */
  consume(prefetch: number): Promise<Consumer>;
  /** Deliveries held at once, and handlers run at once, in the full window. */
  prefetch: number;
  concurrency: number;
  /** Hands back every delivery the worker holds but has not started. */
  handBackWaiting(): void;
  /** Starts what waits, now that more may run. */
  resume(): void;
  /** Counts each step down. */
  onStepDown(): void;
  log: Logger;
  /** @default {STEP_UP_AFTER_MS} */
  stepUpAfterMs?: number;
}

/** A worker's consumer, its window and its steps down; see the module documentation. */
export interface StepDown {
  /** Handlers that may run at once now: the full window's, or 1 while stepped down. */
  readonly concurrency: number;
  /** Whether the worker takes one delivery at a time now. */
  readonly steppedDown: boolean;
  /** Stops consuming for good; deliveries already made stay with the worker to settle. */
  close(): Promise<void>;
}

/** Opens the consumer with the full window and watches the runner; see {@linkcode StepDown}. */
export async function openStepDown(options: StepDownOptions): Promise<StepDown> {
  const { runner, log } = options;
  const stepUpAfterMs = options.stepUpAfterMs ?? STEP_UP_AFTER_MS;
  let consumer: Consumer | undefined = await options.consume(options.prefetch);
  let mode: "full" | "paused" | "single" = "full";
  let closed = false;
  let stepUp: ReturnType<typeof setTimeout> | undefined;
  // Consumers are cancelled and opened one change at a time, in order.
  let changes: Promise<void> = Promise.resolve();

  const change = (work: () => Promise<void>) => {
    changes = changes.then(() => closed ? undefined : work()).catch((error) => {
      // The connection went: the worker reconnects and starts afresh.
      log.warn("Cannot change the worker's consumer", { error });
    });
  };
  const cancel = async () => {
    const old = consumer;
    consumer = undefined;
    await old?.cancel();
  };
  const reopen = (prefetch: number) =>
    change(async () => {
      await cancel();
      if (!closed) consumer = await options.consume(prefetch);
      options.resume();
    });

  const stayDown = () => {
    clearTimeout(stepUp);
    stepUp = setTimeout(() => {
      stepUp = undefined;
      if (closed || mode !== "single") return;
      mode = "full";
      log.info("No handler held the function's sandbox for a while; taking the full window again", {
        prefetch: options.prefetch,
        concurrency: options.concurrency,
      });
      reopen(options.prefetch);
    }, stepUpAfterMs);
  };
  const handBack = () => {
    options.handBackWaiting();
    return runner.returnQueued?.() ?? 0;
  };

  // Only with more than one task at a time can tasks wait behind a held handler.
  const singleWindow = options.prefetch === 1 && options.concurrency === 1;
  runner.watchHeld?.((event) => {
    if (closed || singleWindow) return;
    if (event.held) {
      if (mode !== "full") return;
      mode = "paused";
      clearTimeout(stepUp);
      options.onStepDown();
      log.warn(
        "A task waits for a handler that holds the function's sandbox; handing back the tasks not started",
        { handed_back: handBack() },
      );
      // What comes in while the consumer is being cancelled goes back too.
      change(async () => {
        await cancel();
        handBack();
      });
      return;
    }
    if (mode === "paused" && !event.byHandler) {
      // The machine's load, not a handler: the full window again at once.
      mode = "full";
      reopen(options.prefetch);
      return;
    }
    if (!event.byHandler) return;
    if (mode === "full") {
      // A handler held the sandbox though nothing waited yet: the next would wait.
      options.onStepDown();
      log.warn("A handler held the function's sandbox; taking one task at a time", {
        step_up_after_ms: stepUpAfterMs,
      });
    } else if (mode === "paused") {
      log.info("The function's sandbox is free again; taking one task at a time", {
        step_up_after_ms: stepUpAfterMs,
      });
    }
    if (mode !== "single") {
      mode = "single";
      reopen(1);
    }
    stayDown();
  });

  return {
    get concurrency() {
      return mode === "full" ? options.concurrency : 1;
    },
    get steppedDown() {
      return mode !== "full";
    },
    async close() {
      closed = true;
      clearTimeout(stepUp);
      await changes;
      await cancel().catch(() => {});
    },
  };
}
