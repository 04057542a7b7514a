/**
 * How much a function may write to the log: its console and its own log
 * lines, per line and per second. A line over the bound is cut (and says
 * so); lines over a second's budget are dropped, counted, and reported once
 * when the second is over. The sandbox applies it as the lines are written,
 * so that a flood does not even cross into the runtime, and the runtime
 * applies it again, as it trusts nothing the sandbox says.
 *
 * @module
 */

/** Most characters of one line of a function's output that reach the log. */
export const MAX_OUTPUT_LINE_CHARS = 4096;

/** Lines and characters a sandbox may write in a window, and the window. */
export interface OutputLimits {
  lines: number;
  chars: number;
  windowMs: number;
}

/** A sandbox's budget: 1,000 lines and 256 KiB of text per second. */
export const OUTPUT_LIMITS: Readonly<OutputLimits> = {
  lines: 1000,
  chars: 262_144,
  windowMs: 1000,
};

/** What a window dropped. */
export interface DroppedOutput {
  lines: number;
  chars: number;
}

/** Options for {@linkcode OutputBudget}. */
export interface OutputBudgetOptions {
  /** @default {OUTPUT_LIMITS} */
  limits?: OutputLimits;
  /** @default {performance.now} */
  now?: () => number;
}

/** One sandbox's output budget; see the module documentation. */
export class OutputBudget {
  readonly #limits: OutputLimits;
  readonly #now: () => number;
  readonly #report: (dropped: DroppedOutput) => void;
  #windowStart = -Infinity;
  #lines = 0;
  #chars = 0;
  #dropped: DroppedOutput = { lines: 0, chars: 0 };
  #timer: ReturnType<typeof setTimeout> | undefined;

  /** @param report Told, once per window that dropped anything, what it dropped. */
  constructor(report: (dropped: DroppedOutput) => void, options: OutputBudgetOptions = {}) {
    this.#report = report;
    this.#limits = options.limits ?? OUTPUT_LIMITS;
    this.#now = options.now ?? (() => performance.now());
  }

  /** Whether a line of `chars` characters fits this window; counted as dropped if not. */
  admit(chars: number): boolean {
    const now = this.#now();
    if (now - this.#windowStart >= this.#limits.windowMs) {
      this.#windowStart = now;
      this.#lines = 0;
      this.#chars = 0;
    }
    if (this.#lines >= this.#limits.lines || this.#chars + chars > this.#limits.chars) {
      this.drop(1, chars);
      return false;
    }
    this.#lines++;
    this.#chars += chars;
    return true;
  }

  /** Counts lines dropped elsewhere (in the sandbox) into this window's report. */
  drop(lines: number, chars: number): void {
    this.#dropped.lines += lines;
    this.#dropped.chars += chars;
    if (this.#timer !== undefined) return;
    const left = Math.max(0, this.#windowStart + this.#limits.windowMs - this.#now());
    this.#timer = setTimeout(() => this.flush(), Math.min(left, this.#limits.windowMs));
  }

  /** Reports what is dropped and not reported yet, now; call it when the sandbox ends. */
  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const dropped = this.#dropped;
    if (dropped.lines === 0) return;
    this.#dropped = { lines: 0, chars: 0 };
    this.#report(dropped);
  }
}
