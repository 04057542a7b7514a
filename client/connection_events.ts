/**
 * One line for each thing that happens to a reconnecting connection, in the
 * words the workers log (`run_worker.ts`), so that a caller's output and a
 * worker's log tell one story.
 *
 * @module
 */

import type { ConnectionEvent } from "./reconnecting_broker.ts";

/** The line that tells the user of `event`. */
export function describeConnectionEvent(event: ConnectionEvent): string {
  switch (event.kind) {
    case "lost":
      return `Lost the broker connection; reconnecting: ${event.error.message}`;
    case "retrying":
      return `Broker not reachable; retrying (attempt ${event.attempt}, in ${event.delayMs} ms): ${event.error.message}`;
    case "reconnected":
      return `Reconnected to the broker after ${
        Math.round(event.downMs)
      } ms (attempt ${event.attempts})`;
    case "gave-up":
      return event.error.message;
  }
}
