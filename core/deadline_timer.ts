/**
 * One timer for many deadlines. A worker runs hundreds of attempts at once
 * and a client waits for thousands of replies, each with a deadline that is
 * almost never reached: a timer apiece would cost a timer set and cleared
 * per task. This keeps one, set for the earliest deadline.
 *
 * @module
 */

/**
 * Calls `onDue` when the earliest scheduled deadline (in `performance.now()`
 * milliseconds) comes. `onDue` ends what is due and returns the next
 * deadline still waiting, or `Infinity`.
 */
export class DeadlineTimer {
  readonly #onDue: (now: number) => number;
  readonly #minStepMs: number;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #at = Infinity;

  /**
   * @param onDue Ends what is due at `now`; returns the next deadline, or `Infinity`.
   * @param minStepMs The least time between two calls of `onDue`, so that
   * deadlines close together are ended together.
   */
  constructor(onDue: (now: number) => number, minStepMs = 0) {
    this.#onDue = onDue;
    this.#minStepMs = minStepMs;
  }

  /** Makes sure `onDue` runs no later than `at` (give the earliest of several). */
  schedule(at: number): void {
    if (at >= this.#at) return;
    clearTimeout(this.#timer);
    this.#at = at;
    this.#timer = setTimeout(() => this.#fire(), Math.max(0, at - performance.now()));
  }

  /** Stops waiting, for instance when nothing is left with a deadline. */
  cancel(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#at = Infinity;
  }

  #fire(): void {
    this.#timer = undefined;
    this.#at = Infinity;
    const now = performance.now();
    const next = this.#onDue(now);
    if (next < Infinity) this.schedule(Math.max(next, now + this.#minStepMs));
  }
}
