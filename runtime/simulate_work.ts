/**
 * The demo behaviour task_a and task_b share: `work_ms` of simulated work
 * and `fail_attempts` deliberate failures, both read from the payload.
 *
 * @module
 */

import type { Payload } from "../core/contract/request.ts";
import { InvalidPayloadError, type TaskContext } from "./define_function.ts";

/** The longest simulated work a payload may ask for: one hour. */
export const MAX_WORK_MS = 3_600_000;

/** A failure the payload asked for with `fail_attempts`; retried like any other. */
export class SimulatedFailure extends Error {
  /** @param attempt The attempt that fails. @param failAttempts How many fail. */
  constructor(attempt: number, failAttempts: number) {
    super(`Failing attempt ${attempt} as the payload asks the first ${failAttempts} to fail`);
    this.name = "SimulatedFailure";
  }
}

function readWholeNumber(payload: Payload, key: string, max: number): number | undefined {
  const value = payload[key];
  if (value === undefined) return undefined;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > max) {
    throw new InvalidPayloadError(
      `Cannot run as 'payload.${key}' is ${
        JSON.stringify(value)
      }: send a whole number from 0 to ${max}`,
    );
  }
  return value;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Fails the first `payload.fail_attempts` attempts, then waits
 * `payload.work_ms` milliseconds (else `defaultWorkMs`).
 */
export async function simulateWork(
  payload: Payload,
  context: TaskContext,
  defaultWorkMs: number,
): Promise<void> {
  const workMs = readWholeNumber(payload, "work_ms", MAX_WORK_MS) ?? defaultWorkMs;
  const failAttempts = readWholeNumber(payload, "fail_attempts", 1000) ?? 0;
  if (context.attempt <= failAttempts) throw new SimulatedFailure(context.attempt, failAttempts);
  if (workMs > 0) await sleep(workMs, context.signal);
}
