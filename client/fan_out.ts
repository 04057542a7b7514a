/**
 * Starting many calls at once without holding the first ones back. The AMQP
 * library writes what is published only on a later turn of the event loop,
 * so a loop that publishes ten thousand requests in one turn sends nothing
 * until it has encoded them all, and the broker and the workers wait idle
 * meanwhile. Starting them a slice at a time, with a turn between slices,
 * puts the first requests on the wire while the rest are being made: every
 * call is still in flight at once.
 *
 * @module
 */

import { setImmediate } from "node:timers";

/** Calls started in one turn of the event loop. */
export const FAN_OUT_SLICE = 128;

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Starts `start(item)` for every item, {@linkcode FAN_OUT_SLICE} per turn,
 * and resolves with their results in order, as `Promise.all` does.
 */
export async function fanOut<T, R>(
  items: readonly T[],
  start: (item: T) => Promise<R>,
  slice = FAN_OUT_SLICE,
): Promise<R[]> {
  const started: Promise<R>[] = [];
  for (let i = 0; i < items.length; i++) {
    if (i > 0 && i % slice === 0) await nextTurn();
    const call = start(items[i]);
    // Seen now, so that a call failing while later slices start is not an
    // unhandled rejection; Promise.all below still rejects with it.
    call.catch(() => {});
    started.push(call);
  }
  return await Promise.all(started);
}
