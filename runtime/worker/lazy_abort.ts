/**
 * An abort signal made on first use: most handlers never read theirs, and
 * at thousands of tasks a second the controllers they never use add up.
 *
 * @module
 */

/** A signal that exists once read, and remembers an abort that came before. */
export class LazyAbort {
  #controller: AbortController | undefined;
  #reason: unknown;
  #aborted = false;

  /** The signal; aborted at once if `abort()` came first. */
  get signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.#aborted) this.#controller.abort(this.#reason);
    }
    return this.#controller.signal;
  }

  /** Aborts the signal, now or when it is first read. */
  abort(reason: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#reason = reason;
    this.#controller?.abort(reason);
  }
}
