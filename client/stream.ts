/**
 * A fan-out of any size in bounded memory: calls taken from an iterable as
 * room frees, at most `window` of them in flight (or ended and not yet
 * read), and their outcomes handed over as they end.
 *
 * ```ts
 * function* calls() {
 *   for (let i = 0; i < 1_000_000; i++) yield { function: "task_a", payload: { n: i } };
 * }
 * for await (const { outcome, index } of client.stream(calls(), { window: 1000 })) {
 *   if (outcome.kind === "timeout") console.log(`call ${index} timed out`);
 * }
 * ```
 *
 * A call's clock (its `timeoutMs`, and the deadline its request carries)
 * starts when it is sent, as it enters the window: it measures the wait in
 * the broker's queue and the run, never the wait behind the caller's own
 * calls. A call that times out ends for the caller; its request stays in
 * the queue until its deadline, after which a worker that takes it
 * answers `DeadlineExceeded` without running it and dead-letters it
 * (`expired`), and the broker drops one nobody took (docs/client.md, "Big
 * fan-outs").
 *
 * @module
 */

import type { Payload } from "../core/contract/mod.ts";
import type { CallOutcome, TaskCallOptions } from "./protocol.ts";

/** Calls in flight at once in a stream unless its `window` says otherwise. */
export const DEFAULT_STREAM_WINDOW = 1000;

/** The largest window: beyond it a stream holds as much as a fan-out of everything at once. */
export const MAX_STREAM_WINDOW = 100_000;

/** One call of a stream, and what its caller wants back with its outcome. */
export interface StreamCall<C = unknown> extends TaskCallOptions {
  /** The function's name, such as `task_a`. */
  function: string;
  /** The function's input, a JSON object. */
  payload?: Payload;
  /** Anything of the caller's, handed back with the outcome. */
  context?: C;
}

/** A call's outcome, as a stream hands it over. */
export interface StreamedOutcome<C = unknown> {
  /** The call as given. */
  call: StreamCall<C>;
  /** Its place among the calls, from 0: outcomes come in the order they end. */
  index: number;
  outcome: CallOutcome;
}

/** Options of {@linkcode streamCalls}. */
export interface StreamOptions {
  /**
   * Calls in flight, or ended and not yet read, at once: the next call is
   * sent only when one ends and its outcome was read.
   * @default {DEFAULT_STREAM_WINDOW}
   */
  window?: number;
  /** Stops sending more calls: the stream ends once those in flight have. */
  signal?: AbortSignal;
}

/** What a stream needs of a client: one call. */
export interface StreamCaller {
  request(fn: string, payload?: Payload, options?: TaskCallOptions): Promise<CallOutcome>;
}

function checkWindow(window: number): number {
  if (!Number.isInteger(window) || window < 1 || window > MAX_STREAM_WINDOW) {
    throw new RangeError(
      `Cannot stream calls as 'window' is ${window}: use a whole number from 1 to ${MAX_STREAM_WINDOW}`,
    );
  }
  return window;
}

/**
 * Calls each of `calls` through `client`, at most `window` at once, and
 * yields each outcome as it ends (a reply, whatever its status, or a
 * timeout). Takes the calls lazily: a generator of a million calls holds
 * only the window in memory. Throws when the broker fails (a request not
 * confirmed, the connection lost), after which the calls in flight end
 * with the connection. Breaking out of the loop stops sending; the calls
 * already sent end as usual, unread.
 */
export async function* streamCalls<C = unknown>(
  client: StreamCaller,
  calls: Iterable<StreamCall<C>> | AsyncIterable<StreamCall<C>>,
  options: StreamOptions = {},
): AsyncGenerator<StreamedOutcome<C>, void, undefined> {
  const window = checkWindow(options.window ?? DEFAULT_STREAM_WINDOW);
  const { signal } = options;
  const sync = Symbol.iterator in calls;
  const source = sync
    ? (calls as Iterable<StreamCall<C>>)[Symbol.iterator]()
    : (calls as AsyncIterable<StreamCall<C>>)[Symbol.asyncIterator]();
  // Ended and not yet read, oldest first, read from `head`.
  let ended: StreamedOutcome<C>[] = [];
  let head = 0;
  let inFlight = 0;
  let index = 0;
  let exhausted = false;
  let failure: { error: unknown } | undefined;
  let wake: (() => void) | undefined;
  const notify = () => {
    const waiting = wake;
    wake = undefined;
    waiting?.();
  };
  signal?.addEventListener("abort", notify);

  const start = (call: StreamCall<C>) => {
    const at = index++;
    inFlight++;
    const { function: fn, payload, context: _context, ...callOptions } = call;
    let sent: Promise<CallOutcome>;
    try {
      sent = client.request(fn, payload, callOptions);
    } catch (error) {
      // An unknown function, say: the caller's mistake, thrown as it is.
      sent = Promise.reject(error);
    }
    sent.then(
      (outcome) => void ended.push({ call, index: at, outcome }),
      (error) => void (failure ??= { error }),
    ).finally(() => {
      inFlight--;
      notify();
    });
  };

  const room = () => inFlight + ended.length - head < window;
  const fill = async () => {
    while (!exhausted && failure === undefined && !signal?.aborted && room()) {
      const next = sync
        ? (source as Iterator<StreamCall<C>>).next()
        : await (source as AsyncIterator<StreamCall<C>>).next();
      if (next.done) exhausted = true;
      else start(next.value);
    }
  };

  try {
    while (true) {
      await fill();
      if (failure !== undefined) throw failure.error;
      if (head < ended.length) {
        const outcome = ended[head];
        ended[head++] = undefined as unknown as StreamedOutcome<C>;
        // Keep the array short: drop what was read once it is most of it.
        if (head > 1024 && head * 2 > ended.length) {
          ended = ended.slice(head);
          head = 0;
        }
        yield outcome;
        continue;
      }
      if (inFlight === 0 && (exhausted || signal?.aborted)) return;
      await new Promise<void>((resolve) => wake = resolve);
    }
  } finally {
    signal?.removeEventListener("abort", notify);
    if (!exhausted) await source.return?.();
  }
}
