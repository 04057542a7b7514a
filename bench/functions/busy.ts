/**
 * A function of the benchmark's own: `spin_ms` of CPU-bound work (a loop
 * that never yields, as a parser or an image filter would be), then
 * `work_ms` of waiting, then "done". It measures what a handler that holds
 * its sandbox's thread does to the tasks beside it on the same worker.
 *
 * @module
 */

import { defineFunction, InvalidPayloadError } from "@task-system/runtime";

function milliseconds(value: unknown, key: string): number {
  if (value === undefined) return 0;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > 60_000) {
    throw new InvalidPayloadError(`Cannot run as 'payload.${key}' is not a whole number of ms`);
  }
  return value;
}

export default defineFunction({
  name: "busy",
  queue: "busy",
  async handler(payload, { signal }) {
    const spin = milliseconds(payload.spin_ms, "spin_ms");
    const wait = milliseconds(payload.work_ms, "work_ms");
    const until = performance.now() + spin;
    while (performance.now() < until) {
      // Holds the thread: nothing else in this sandbox runs meanwhile.
    }
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    signal.throwIfAborted();
    return "done";
  },
});
