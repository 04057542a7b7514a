/**
 * A scheduler replica for the life of its process: connects (retrying with
 * backoff while the broker does not answer), runs a session
 * (`scheduler_session.ts`) on the connection, and after a lost connection
 * or a failed session starts over on a new one, as a standby until the
 * broker feeds it the state again. Stops on its signal, handing the queue
 * to the next replica as its connection closes.
 *
 * @module
 */

import { backoffDelay, RECONNECT_POLICY } from "../core/backoff.ts";
import { type Broker, BrokerUnavailableError, QueueMismatchError } from "../core/broker/mod.ts";
import {
  REAL_CLOCK,
  type SchedulerSession,
  type SchedulerSessionOptions,
  startSchedulerSession,
} from "./scheduler_session.ts";

/** What a replica is doing, for its health endpoint. */
export interface ReplicaState {
  connected: boolean;
  active: boolean;
}

/** Options for {@linkcode runScheduler}. */
export interface RunSchedulerOptions extends Omit<SchedulerSessionOptions, "onActive"> {
  /** Opens a broker connection; called again after each loss. */
  connect: () => Promise<Broker>;
  /** Aborting it stops the replica. */
  signal: AbortSignal;
  /** Updated as the replica connects, becomes active, loses its connection. */
  state?: ReplicaState;
}

/** A wait that ends early when `signal` aborts. */
const pause = (ms: number, signal: AbortSignal) => REAL_CLOCK.sleep(ms, signal);

/**
 * Runs until `signal` aborts. Rejects only on a fault no reconnection can
 * fix: the scheduler queue exists with other arguments.
 */
export async function runScheduler(options: RunSchedulerOptions): Promise<void> {
  const { signal, log } = options;
  const state = options.state ?? { connected: false, active: false };
  const stopped = new Promise<"stop">((resolve) => {
    if (signal.aborted) resolve("stop");
    signal.addEventListener("abort", () => resolve("stop"), { once: true });
  });
  let failures = 0;
  while (!signal.aborted) {
    let broker: Broker;
    try {
      broker = await options.connect();
    } catch (error) {
      if (!(error instanceof BrokerUnavailableError)) throw error;
      const delay = backoffDelay(++failures, RECONNECT_POLICY);
      log.warn("Broker not reachable; retrying", {
        attempt: failures,
        retry_in_ms: delay,
        error: error.message,
      });
      await pause(delay, signal);
      continue;
    }
    let session: SchedulerSession;
    try {
      session = await startSchedulerSession(broker, {
        ...options,
        onActive: () => state.active = true,
      });
    } catch (error) {
      await broker.close().catch(() => {});
      if (error instanceof QueueMismatchError) {
        throw new QueueMismatchError(
          `Cannot use the scheduler queue as ${error.message}: give --queue-type the queue's type, or delete the queue (the schedule's state goes with it, and each schedule starts afresh)`,
          error,
          { cause: error },
        );
      }
      const delay = backoffDelay(++failures, RECONNECT_POLICY);
      log.warn("Could not set up the scheduler queue; retrying", {
        attempt: failures,
        retry_in_ms: delay,
        error: (error as Error).message,
      });
      await pause(delay, signal);
      continue;
    }
    failures = 0;
    state.connected = true;
    const outcome = await Promise.race([
      stopped,
      broker.closed.then((error) => ({ lost: error })),
      session.ended.then(() => ({ failed: undefined }), (error) => ({ failed: error })),
    ]);
    const wasActive = state.active;
    state.connected = false;
    if (outcome === "stop") {
      log.info("Stopping: handing the schedule to another replica", { active: wasActive });
      await session.stop();
      await broker.close();
      state.active = false;
      log.info("Stopped");
      return;
    }
    state.active = false;
    await session.stop();
    await broker.close().catch(() => {});
    if ("lost" in outcome) {
      log.warn("Lost the broker connection; reconnecting as a standby", {
        error: outcome.lost?.message ?? "closed",
        was_active: wasActive,
      });
    } else {
      log.error("The scheduler stopped firing on a fault; reconnecting as a standby", {
        error: outcome.failed,
        was_active: wasActive,
      });
    }
    await pause(backoffDelay(1, RECONNECT_POLICY), signal);
  }
  log.info("Stopped while not connected");
}
